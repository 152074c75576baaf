"""Built-in metrics (a plugin like any other)."""
from restore.hookspecs import hookimpl


@hookimpl
def restore_metrics():
    from restore.metrics.distribution import sliced_wasserstein

    return {"sliced-wasserstein": sliced_wasserstein}
