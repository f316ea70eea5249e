"""The ClientApp: trains on its partition (node config partition-id / num-partitions)."""
from flwr.app import ArrayRecord, Context, Message, MetricRecord, RecordDict
from flwr.clientapp import ClientApp

from flower_digits import task

app = ClientApp()


def _shard(context):
    return task.partition(int(context.node_config["partition-id"]), int(context.node_config["num-partitions"]))


@app.train()
def train(msg: Message, context: Context):
    x, y = _shard(context)
    weights = msg.content["arrays"].to_numpy_ndarrays()
    cfg = context.run_config
    weights, loss = task.train(weights, x, y, int(cfg["local-epochs"]), float(cfg["learning-rate"]))
    content = RecordDict({"arrays": ArrayRecord(weights),
                          "metrics": MetricRecord({"train_loss": loss, "num-examples": len(y)})})
    return Message(content=content, reply_to=msg)


@app.evaluate()
def evaluate(msg: Message, context: Context):
    x, y = _shard(context)
    weights = msg.content["arrays"].to_numpy_ndarrays()
    loss, acc = task.loss_and_accuracy(weights, x, y)
    content = RecordDict({"metrics": MetricRecord({"eval_loss": loss, "eval_acc": acc, "num-examples": len(y)})})
    return Message(content=content, reply_to=msg)
