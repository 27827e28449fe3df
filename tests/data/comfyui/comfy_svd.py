"""SVD img2vid's UNet as ComfyUI's model detection configures it for a real file (shared by the scripts here)."""

SVD_UNET = dict(image_size=32, in_channels=8, out_channels=4, model_channels=320, num_res_blocks=[2, 2, 2, 2],
                channel_mult=[1, 2, 4, 4], transformer_depth=[1, 1, 1, 1, 1, 1, 0, 0],
                transformer_depth_output=[1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0], transformer_depth_middle=1,
                use_linear_in_transformer=True, context_dim=1024, num_heads=-1, num_head_channels=64,
                adm_in_channels=768, num_classes="sequential", use_spatial_transformer=True, legacy=False,
                use_temporal_attention=True, use_temporal_resblock=True, extra_ff_mix_layer=True,
                use_spatial_context=True, merge_strategy="learned_with_images", merge_factor=0.0,
                video_kernel_size=[3, 1, 1], disable_temporal_crossattention=False, max_ddpm_temb_period=10000)
