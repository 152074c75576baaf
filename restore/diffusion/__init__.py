"""The diffusion core: noise schedules, the denoiser view of a prior, samplers."""
