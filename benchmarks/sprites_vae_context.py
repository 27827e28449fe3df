"""Does a sprite's reconstructed colour depend on what else is in the frame, and through which layers?

For the first frame of held-out scenes, a 36 x 36 px square of a saturated colour (the one farthest from the
scene's sprite colours) is pasted into an empty corner, at least 8 px from every sprite. Each sprite's mean
reconstructed colour is compared with the original frame's reconstruction (the VAE's encoder and decoder, one frame,
the mode of the posterior):

- "fresh": the pasted frame reconstructed as the pipeline would;
- "frozen: ...": the same, with the per-frame statistics (mean and variance over the picture) of some of the VAE's
  GroupNorm layers held at the original frame's, so that the square can reach the sprite only through the other
  layers (convolutions, attention, the other norms).

A sprite's colour that moves when something appears far away is a colour the VAE cannot reproduce exactly; the
frozen rows say how much of that comes through the normalisation statistics. Prints a table; writes JSON.

    python benchmarks/sprites_vae_context.py --json benchmarks/results/sprites-vae-context/shipped.json
    python benchmarks/sprites_vae_context.py --model outputs/sprites-c64/model --json ...
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

SQUARE = 36  # px
MARGIN = 8  # px of background between the square and any sprite
CORNERS = ((4, 4), (4, 88), (88, 4), (88, 88))  # (y, x) of the square's top-left corner, tried in this order
COLOURS = np.array([[255, 255, 0], [0, 255, 255], [255, 0, 255], [255, 128, 0], [0, 0, 255], [0, 255, 0]], float)
FROZEN = {"frozen: the decoder's last norm": lambda name: name == "decoder.conv_norm_out",
          "frozen: every decoder norm": lambda name: name.startswith("decoder."),
          "frozen: every norm": lambda name: True}


class NormStatistics:
    """Forward hooks on a VAE's GroupNorm layers that record each one's statistics (``record``) or normalise with
    the recorded ones (``replay``, for the layers ``chosen`` says), or leave them alone (``off``)."""

    def __init__(self, vae):
        import torch

        self.mode, self.chosen, self.stats = "off", lambda name: False, {}
        self.handles = [m.register_forward_hook(self._hook(name)) for name, m in vae.named_modules()
                        if isinstance(m, torch.nn.GroupNorm)]

    def _hook(self, name: str):
        import torch

        def hook(module, args, output):
            x = args[0]
            groups = x.reshape(x.shape[0], module.num_groups, -1)
            if self.mode == "record":
                self.stats[name] = (groups.mean(2, keepdim=True), groups.var(2, unbiased=False, keepdim=True))
            if self.mode != "replay" or not self.chosen(name):
                return output
            mean, var = self.stats[name]
            y = ((groups - mean) / torch.sqrt(var + module.eps)).reshape(x.shape)
            index = (None, slice(None)) + (None,) * (x.dim() - 2)
            return y * module.weight[index] + module.bias[index]
        return hook


def reconstruct(vae, image: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (H, W, 3) float in 0..255 through the VAE (one frame, the posterior's mode)."""
    import torch

    x = torch.from_numpy(image).float().permute(2, 0, 1)[None] / 127.5 - 1
    with torch.no_grad():
        out = vae.decode(vae.encode(x).latent_dist.mode(), num_frames=1).sample.clamp(-1, 1)
    return ((out[0].permute(1, 2, 0) + 1) * 127.5).numpy()


def pasted(scene) -> np.ndarray | None:
    """The scene's first frame with the square pasted into the first empty corner (None when no corner is empty)."""
    occupied = scene.visible[:, 0].any(0)
    colour = COLOURS[np.argmax([np.linalg.norm(scene.colors.astype(float) - c, axis=1).min() for c in COLOURS])]
    for y, x in CORNERS:
        if not occupied[max(0, y - MARGIN):y + SQUARE + MARGIN, max(0, x - MARGIN):x + SQUARE + MARGIN].any():
            frame = scene.frames[0].copy()
            frame[y:y + SQUARE, x:x + SQUARE] = colour.astype(np.uint8)
            return frame
    return None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="sprites", help="sprites (default), a trained model folder or a train-sprites "
                        "checkpoint (vae.pt)")
    parser.add_argument("--scenes", type=int, default=16, help="held-out scenes tried (default 16)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", default=None, help="write the figures here")
    args = parser.parse_args(argv)
    import torch

    from sgi2v.generation import file_sha256
    from sgi2v.sprites.config import TRAIN_SEED_LIMIT
    from sgi2v.sprites.scene import render_scene
    from sgi2v.sprites.train import load_vae, vae_weights_file

    torch.set_num_threads(args.threads)
    vae = load_vae(args.model)
    norms = NormStatistics(vae)
    rows = {"colour error": [], "fresh": [], **{name: [] for name in FROZEN}}
    used = []
    for seed in range(TRAIN_SEED_LIMIT, TRAIN_SEED_LIMIT + args.scenes):
        scene = render_scene(seed)
        other = pasted(scene)
        if other is None:
            continue
        used.append(seed)
        norms.mode = "record"
        original = reconstruct(vae, scene.frames[0])
        norms.mode = "off"
        results = {"fresh": reconstruct(vae, other)}
        norms.mode = "replay"
        for name, chosen in FROZEN.items():
            norms.chosen = chosen
            results[name] = reconstruct(vae, other)
        norms.mode = "off"
        for i, colour in enumerate(scene.colors.astype(float)):
            inside = scene.visible[i, 0]
            if inside.sum() < 50:  # hidden or mostly outside the picture
                continue
            rows["colour error"].append(float(np.linalg.norm(original[inside].mean(0) - colour)))
            for name, frame in results.items():
                rows[name].append(float(np.linalg.norm(frame[inside].mean(0) - original[inside].mean(0))))
    summary = {name: {"mean": round(float(np.mean(v)), 2), "max": round(float(np.max(v)), 2)} for name, v in rows.items()}
    print(f"{args.model}: {len(rows['fresh'])} sprites in {len(used)} scenes (RGB distance, 0-255 levels)")
    print("| | mean | max |\n| --- | --- | --- |")
    print(f"| sprite colour error of the original frame's reconstruction | {summary['colour error']['mean']} | "
          f"{summary['colour error']['max']} |")
    for name in ("fresh", *FROZEN):
        label = "colour shift when the square is pasted" + ("" if name == "fresh" else f", {name.split(': ')[1]} frozen")
        print(f"| {label} | {summary[name]['mean']} | {summary[name]['max']} |")
    if args.json:
        weights = Path(args.model) if args.model.endswith(".pt") else vae_weights_file(args.model)
        report = {"model": args.model, "vae_sha256": file_sha256(weights), "scenes": used, "square_px": SQUARE,
                  "margin_px": MARGIN, "summary": summary, "per_sprite": rows}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
