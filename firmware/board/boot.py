# fl-hil Pico W boot.py: nothing heavy here (a failing boot.py makes a board hard to recover).
# Everything happens in main.py.
import gc

gc.collect()
