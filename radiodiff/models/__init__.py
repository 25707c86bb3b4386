"""Networks and their losses: the KL autoencoder (first stage) and its VAE-GAN loss, RadioDiff's
conditional U-Net (second stage), the RadioUNet baseline, and the pipelines that wrap trained
models into self-contained folders for sampling and prediction."""
