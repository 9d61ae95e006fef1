"""``t2i serve``: the local Prefect server, work pool, deployments and worker of this checkout.

processes.py (pids and process groups), stack.py (the stack's environment, server, pool,
deployments, worker), cli.py (the command, with the worker's pid file and log).
"""
