"""Networks and their losses: the KL autoencoder (first stage) and its VAE-GAN loss."""
