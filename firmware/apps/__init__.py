"""FL applications. Each module has `async def run(node, args)` returning the node's result."""
