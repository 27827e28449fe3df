"""An independent, deliberately straightforward SG-I2V written from the method's description:
diffusers' own StableVideoDiffusionPipeline, with the latent optimised in a step-end callback;
features from forward pre-hooks and an explicit softmax; the loss as a loop over frames and boxes;
a full UNet pass; loss.backward(); masks built element by element. Used only to check the package."""

import math

import torch
import torch.nn.functional as F
from diffusers import StableVideoDiffusionPipeline


def gaussian(rows, cols, sigma):
    sx, sy = sigma * cols / 2, sigma * rows / 2
    g = torch.zeros(rows, cols, dtype=torch.float64)
    for y in range(rows):
        for x in range(cols):
            g[y, x] = math.exp(-0.5 * ((x + 0.5 - cols / 2) ** 2 / sx**2 + (y + 0.5 - rows / 2) ** 2 / sy**2))
    return (g / g.max()).float()


def butterworth(rows, cols, cutoff, order):
    m = torch.zeros(rows, cols)
    for u in range(rows):
        for v in range(cols):
            d2 = (2 * u / rows - 1) ** 2 + (2 * v / cols - 1) ** 2
            m[u, v] = 1 / (1 + (d2 / cutoff**2) ** order)
    return m


def cells_of(box):
    x0, y0, x1, y1 = box
    r0, c0 = math.floor(y0 / 8), math.floor(x0 / 8)
    return r0, c0, max(r0 + 1, math.floor(y1 / 8)), max(c0 + 1, math.floor(x1 / 8))


def features(unet, scheduler, z, t, cond, frames, layers):
    h, w = z.shape[-2:]
    recorded = []

    def hook(module, args, kwargs):
        x = args[0] if args else kwargs["hidden_states"]  # (F, L, C)
        heads = module.heads
        q, k, v = module.to_q(x), module.to_k(x), module.to_v(x)
        d = q.shape[-1] // heads
        q, k, v = (y.view(frames, -1, heads, d).transpose(1, 2) for y in (q, k, v))
        k0, v0 = k[:1].detach(), v[:1].detach()
        a = torch.softmax(q @ k0.transpose(-1, -2) / math.sqrt(d), dim=-1) @ v0  # (F, heads, L, d)
        side = int(math.sqrt(h * w // q.shape[2]))
        recorded.append(a.transpose(1, 2).reshape(frames, h // side, w // side, heads * d))

    handles = [unet.get_submodule(n).transformer_blocks[0].attn1.register_forward_pre_hook(hook, with_kwargs=True) for n in layers]
    try:
        model_input = torch.cat([scheduler.scale_model_input(z, t), cond["image_latents"]], dim=2)
        unet(model_input, t, encoder_hidden_states=cond["image_embeddings"], added_time_ids=cond["added_time_ids"], return_dict=False)
    finally:
        for handle in handles:
            handle.remove()
    maps = [F.interpolate(r.permute(0, 3, 1, 2), size=(h, w), mode="bilinear", align_corners=False).permute(0, 2, 3, 1) for r in recorded]
    return torch.cat(maps, dim=-1)


def loss_of(phi, boxes, sigma):
    frames, h, w, _ = phi.shape
    num, den = 0.0, 0.0
    targets = []
    for n in range(len(boxes)):
        r0, c0, r1, c1 = cells_of(boxes[n][0])
        targets.append(phi[0, r0:r1, c0:c1].detach())
    for f in range(1, frames):
        for n in range(len(boxes)):
            r0, c0, r1, c1 = cells_of(boxes[n][f])
            rr0, cc0, rr1, cc1 = max(r0, 0), max(c0, 0), min(r1, h), min(c1, w)
            if rr0 >= rr1 or cc0 >= cc1:
                continue
            tgt = F.interpolate(targets[n].permute(2, 0, 1)[None], size=(r1 - r0, c1 - c0), mode="bilinear", align_corners=False)
            tgt = tgt[0].permute(1, 2, 0)[rr0 - r0 : rr1 - r0, cc0 - c0 : cc1 - c0]
            err = ((tgt - phi[f, rr0:rr1, cc0:cc1]) ** 2).mean(-1)
            g = gaussian(r1 - r0, c1 - c0, sigma)[rr0 - r0 : rr1 - r0, cc0 - c0 : cc1 - c0]
            num = num + (g * err).sum()
            den = den + g.sum()
    return num / den


def optimize(unet, scheduler, latents, t, cond, boxes, config, frames):
    before = latents.detach().float()
    z = before.clone().requires_grad_(True)
    optimizer = torch.optim.AdamW([z], lr=config.learning_rate)  # new every step
    with torch.enable_grad():
        for _ in range(config.iterations):
            loss = loss_of(features(unet, scheduler, z, t, cond, frames, config.feature_layers), boxes, config.heatmap_sigma)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    z = z.detach()
    if config.high_frequency_reinit:
        lpf = butterworth(z.shape[-2], z.shape[-1], config.low_pass_cutoff, config.butterworth_order)
        fz = torch.fft.fftshift(torch.fft.fft2(z), dim=(-2, -1))
        fb = torch.fft.fftshift(torch.fft.fft2(before), dim=(-2, -1))
        z = torch.fft.ifft2(torch.fft.ifftshift(fz * lpf + fb * (1 - lpf), dim=(-2, -1))).real
    return z.to(latents.dtype)


def reference_generate(components, image, boxes, config, **kwargs):
    """Run the reference; the first step (t = S) cannot be optimised from a step-end callback."""
    pipe = StableVideoDiffusionPipeline(**components)
    pipe.set_progress_bar_config(disable=True)
    steps = kwargs["num_inference_steps"]
    frames = kwargs["num_frames"]
    assert steps not in config.optimize_timesteps
    requires = [p.requires_grad for p in pipe.unet.parameters()]
    pipe.unet.requires_grad_(False)

    def callback(p, i, t, tensors):
        next_t = steps - (i + 1)
        if next_t in config.optimize_timesteps and config.iterations > 0:
            cond = {k: tensors[k][-1:] for k in ("image_latents", "image_embeddings", "added_time_ids")}
            t_next = p.scheduler.timesteps[i + 1]
            tensors["latents"] = optimize(p.unet, p.scheduler, tensors["latents"], t_next, cond, boxes, config, frames)
        return tensors

    try:
        return pipe(
            image, callback_on_step_end=callback,
            callback_on_step_end_tensor_inputs=["latents", "image_latents", "image_embeddings", "added_time_ids"], **kwargs,
        ).frames
    finally:
        for p, r in zip(pipe.unet.parameters(), requires):
            p.requires_grad_(r)
