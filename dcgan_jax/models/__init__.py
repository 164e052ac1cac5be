"""Generator and discriminator networks, and the layers they are built from."""
