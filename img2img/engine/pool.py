"""The image pool of CycleGAN (Shrivastava et al.): a history of generated images.

The discriminator sees, for each new fake, with probability 1/2 the fake itself and with
probability 1/2 an older fake from the pool (which the new one then replaces), once the
pool is full; until then every fake is stored and returned. This version is vectorised over
the batch. Two images of one batch that draw the same slot: the later one is stored, both
return the slot's previous content (the reference, looping image by image, would return the
first image's fake to the second; the distribution is the same).

Its random draws come from its own generator, so its state can be checkpointed exactly.
"""

from __future__ import annotations

import torch


class ImagePool:
    def __init__(self, size: int, seed: int = 0) -> None:
        self.size = size
        self.filled = 0
        self.images: torch.Tensor | None = None
        self.generator = torch.Generator().manual_seed(seed)

    @torch.no_grad()
    def query(self, images: torch.Tensor) -> torch.Tensor:
        if self.size == 0:
            return images
        images = images.detach()
        if self.images is None:
            self.images = torch.empty(
                (self.size, *images.shape[1:]), dtype=images.dtype, device=images.device
            )
        elif self.images.shape[1:] != images.shape[1:]:
            raise ValueError(
                f"image pool holds {tuple(self.images.shape[1:])} images, got "
                f"{tuple(images.shape[1:])}; training crops must have one size"
            )
        n = images.shape[0]
        out = images.clone()
        # Fill the pool first; these images are returned as they are.
        take = min(n, self.size - self.filled)
        if take:
            self.images[self.filled : self.filled + take] = images[:take].to(self.images.dtype)
            self.filled += take
        rest = n - take
        if rest:
            swap = torch.rand(rest, generator=self.generator) > 0.5
            slots = torch.randint(0, self.size, (rest,), generator=self.generator)
            which = torch.nonzero(swap).flatten()
            if which.numel():
                slot_idx = slots[which]
                # A write with repeated indices is not deterministic: keep only the last
                # image that drew each slot.
                order = torch.arange(slot_idx.numel())
                last = torch.full((self.size,), -1, dtype=order.dtype)
                last.scatter_reduce_(0, slot_idx, order, reduce="amax")
                writes = last[slot_idx] == order
                batch_idx = (which + take).to(images.device)
                slot_dev = slot_idx.to(images.device)
                out[batch_idx] = self.images[slot_dev].to(out.dtype)
                write_dev = writes.to(images.device)
                self.images[slot_dev[write_dev]] = images[batch_idx[write_dev]].to(self.images.dtype)
        return out

    def state_dict(self) -> dict[str, torch.Tensor]:
        state = {
            "filled": torch.tensor(self.filled),
            "generator": self.generator.get_state(),
        }
        if self.images is not None:
            state["images"] = self.images.detach().cpu().clone()
        return state

    def load_state_dict(self, state: dict[str, torch.Tensor], device: torch.device) -> None:
        self.filled = int(state["filled"])
        self.generator.set_state(state["generator"])
        self.images = state["images"].to(device).clone() if "images" in state else None
