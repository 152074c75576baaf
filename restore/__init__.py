"""restore: image restoration with diffusion priors.

    y = A(x) + n     operator and noise model     restore.operators
    p(x)             score prior, pixel or latent restore.priors
    x ~ p(x | y)     conditioning strategy        restore.strategies

Importing this package is light: no torchvision, lpips or diffusers.
"""
__version__ = "0.1.0"
