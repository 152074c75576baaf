"""Conditioning strategies: ways of bringing a measurement y into a sampler, x ~ p(x | y)."""
