"""From a requested model to ordered, capable targets: the model registry, ordering by strategy,
and planning by capability."""
