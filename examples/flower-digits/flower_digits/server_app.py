"""The ServerApp: FedAvg over the SuperNodes, the global model evaluated on the held-out test set
after every round (its accuracy is what fl-hil's `accuracy` expectation reads)."""
from flwr.app import ArrayRecord, Context, MetricRecord
from flwr.serverapp import Grid, ServerApp
from flwr.serverapp.strategy import FedAvg

from flower_digits import task

app = ServerApp()


def _central_evaluate(server_round, arrays):
    x, y = task.test_set()
    loss, acc = task.loss_and_accuracy(arrays.to_numpy_ndarrays(), x, y)
    return MetricRecord({"loss": loss, "accuracy": acc})


@app.main()
def main(grid: Grid, context: Context):
    cfg = context.run_config
    need = int(cfg["min-nodes"])
    strategy = FedAvg(fraction_train=float(cfg["fraction-train"]), fraction_evaluate=float(cfg["fraction-evaluate"]),
                      min_train_nodes=need, min_evaluate_nodes=need, min_available_nodes=need)
    strategy.start(grid=grid, initial_arrays=ArrayRecord(task.initial_weights()),
                   num_rounds=int(cfg["num-server-rounds"]), timeout=float(cfg["round-timeout"]),
                   evaluate_fn=_central_evaluate)
