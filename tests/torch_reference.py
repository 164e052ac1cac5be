"""The same DCGAN in PyTorch, as an independent reference for tests and benchmarks.

Needs torch (the `bench` or `test` extra); nothing in training imports this module.
`load_flax_params` copies a Flax parameter tree in, so both frameworks can be run on
identical weights.
"""

import numpy as np
import torch
from torch import nn

from dcgan_jax.models.dcgan import num_blocks


def generator(resolution: int, nf: int, z_dim: int) -> nn.Sequential:
  n = num_blocks(resolution)
  layers: list[nn.Module] = [nn.ConvTranspose2d(z_dim, nf * 2 ** (n - 1), 4, 1, 0, bias=False),
                             nn.BatchNorm2d(nf * 2 ** (n - 1)), nn.ReLU()]
  for i in reversed(range(n - 1)):
    layers += [nn.ConvTranspose2d(nf * 2 ** (i + 1), nf * 2**i, 4, 2, 1, bias=False),
               nn.BatchNorm2d(nf * 2**i), nn.ReLU()]
  layers += [nn.ConvTranspose2d(nf, 3, 4, 2, 1, bias=False), nn.Tanh()]
  return nn.Sequential(*layers)


def discriminator(resolution: int, nf: int) -> nn.Sequential:
  n = num_blocks(resolution)
  layers: list[nn.Module] = []
  in_channels = 3
  for i in range(n):
    layers.append(nn.Conv2d(in_channels, nf * 2**i, 4, 2, 1, bias=False))
    if i > 0:
      layers.append(nn.BatchNorm2d(nf * 2**i))
    layers.append(nn.LeakyReLU(0.2))
    in_channels = nf * 2**i
  layers.append(nn.Conv2d(in_channels, 1, 4, 1, 0, bias=False))
  return nn.Sequential(*layers)


def load_flax_params(module: nn.Sequential, params: dict, batch_stats: dict | None = None) -> None:
  """Copies Flax parameters (and running statistics) into a module built above.

  Flax's transposed-conv kernel (kh, kw, in, out) is PyTorch's weight (in, out, kh, kw)
  flipped in space, since Flax does not flip it; conv kernels are HWIO vs OIHW.
  """
  convs = [m for m in module if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]
  norms = [m for m in module if isinstance(m, nn.BatchNorm2d)]
  with torch.no_grad():
    for i, conv in enumerate(convs):
      if isinstance(conv, nn.ConvTranspose2d):
        kernel = np.asarray(params[f"ConvTranspose_{i}"]["kernel"])[::-1, ::-1]
        conv.weight.copy_(torch.from_numpy(kernel.transpose(2, 3, 0, 1).copy()))
      else:
        kernel = np.asarray(params[f"Conv_{i}"]["kernel"])
        conv.weight.copy_(torch.from_numpy(kernel.transpose(3, 2, 0, 1).copy()))
    for i, norm in enumerate(norms):
      norm.weight.copy_(torch.tensor(np.asarray(params[f"BatchNorm_{i}"]["scale"])))
      norm.bias.copy_(torch.tensor(np.asarray(params[f"BatchNorm_{i}"]["bias"])))
      if batch_stats is not None:
        norm.running_mean.copy_(torch.tensor(np.asarray(batch_stats[f"BatchNorm_{i}"]["mean"])))
        norm.running_var.copy_(torch.tensor(np.asarray(batch_stats[f"BatchNorm_{i}"]["var"])))


class TrainStep:
  """One D update then one G update, as in the PyTorch DCGAN tutorial."""

  def __init__(self, resolution: int, nf: int, z_dim: int, lr: float = 2e-4,
               device: str = "cpu"):
    self.device, self.z_dim = device, z_dim
    self.g = generator(resolution, nf, z_dim).to(device)
    self.d = discriminator(resolution, nf).to(device)
    self.g_opt = torch.optim.Adam(self.g.parameters(), lr=lr, betas=(0.5, 0.999))
    self.d_opt = torch.optim.Adam(self.d.parameters(), lr=lr, betas=(0.5, 0.999))
    self.loss = nn.BCEWithLogitsLoss()

  def __call__(self, images_uint8_BHWC: torch.Tensor) -> tuple[float, float]:
    real = images_uint8_BHWC.permute(0, 3, 1, 2).float() / 127.5 - 1.0
    batch = real.shape[0]
    ones = torch.ones(batch, device=self.device)
    zeros = torch.zeros(batch, device=self.device)
    fake = self.g(torch.randn(batch, self.z_dim, 1, 1, device=self.device))
    self.d_opt.zero_grad(set_to_none=True)
    d_loss = (self.loss(self.d(real).view(-1), ones) +
              self.loss(self.d(fake.detach()).view(-1), zeros))
    d_loss.backward()
    self.d_opt.step()
    self.g_opt.zero_grad(set_to_none=True)
    g_loss = self.loss(self.d(fake).view(-1), ones)
    g_loss.backward()
    self.g_opt.step()
    return d_loss, g_loss
