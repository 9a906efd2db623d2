"""`python -m digitvae.train`: `digitvae train`, and data-parallel training when torchrun starts it.

torchrun --nproc_per_node=2 -m digitvae.train --data ~/.cache/digitvae/mnist -o runs/vae
"""

from digitvae.cli.train import main

if __name__ == "__main__":
    main()
