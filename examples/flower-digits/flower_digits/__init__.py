"""flower-digits: a Flower app written for fl-hil's Flower tests."""
