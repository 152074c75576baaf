"""Built-in prior formats: analytic priors, ADM checkpoints, the project's own UNet."""
