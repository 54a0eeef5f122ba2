"""attnkit: the helper package of an interactive course on attention.

Everything public is importable from here, e.g. `from attnkit import scaled_dot_product_attention`,
and listed by `dir(attnkit)` (so Jupyter's tab completion shows it). The map below says which module
holds each name (PEP 562): a name's module loads on first use, and only that module, so
`import attnkit` is instant and prints nothing; plotting and widgets load only when asked for.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

# One concept per module, and the public names it holds (its __all__; tests/test_api.py keeps the two equal).
_EXPORTS: dict[str, tuple[str, ...]] = {
    "attention": ("attend", "entropy", "masked_softmax", "scaled_dot_product_attention", "softmax"),
    "masks": ("causal_mask", "combine_masks", "padding_invariance", "padding_mask", "to_additive", "to_bool"),
    "scoring": ("AdditiveAttention", "additive_scores", "attention_from_scores", "dot_product_scores",
                "scaled_dot_product_scores", "softmax_saturation"),
    "hard_attention": ("MovingAverageBaseline", "argmax_hard_attention", "reinforce_gradient", "sample_hard_attention"),
    "local_attention": ("gaussian_window", "local_window_mask", "luong_local_attention", "monotonic_alignment",
                        "predictive_alignment"),
    "mha": ("MultiHeadAttention", "merge_heads", "split_heads"),
    "kv_cache": ("KVCache",),
    "gpt": ("Block", "CausalSelfAttention", "GPT", "GPTConfig", "MLP"),
    "decoding": ("generate",),
    "positions": ("alibi_bias", "alibi_slopes", "apply_rope", "rope_cos_sin", "rotate_half", "sinusoidal_positions"),
    "cross_attention": ("CrossAttention", "Seq2SeqReverser", "reversal_batch", "train_reverser"),
    "block": ("TransformerBlock", "gradient_norms_by_depth"),
    "sampling": ("apply_temperature", "sample_next", "sampling_probs", "top_k_filter", "top_p_filter"),
    "char_gpt": ("CHAR_GPT_CONFIG", "CHECKPOINT", "CharVocab", "TrainLog", "attention_weights", "bigram_loss",
                 "char_batch", "docs_text", "evaluate_loss", "load_char_gpt", "save_char_gpt", "train_char_gpt"),
    "plot": ("plot_softmax_saturation", "show_attention", "show_heads", "show_mask", "show_matrix"),
    "widgets": ("attention_explorer", "attention_explorer_data", "cache_growth_explorer", "cache_growth_explorer_data",
                "decoding_explorer", "decoding_explorer_data", "decoding_rows", "heads_explorer", "heads_explorer_data",
                "local_attention_explorer", "local_attention_explorer_data", "mask_explorer", "mask_explorer_data",
                "prefix_explorer", "prefix_explorer_data", "projection_explorer", "projection_explorer_data",
                "rope_offset_explorer", "rope_offset_explorer_data", "sampling_explorer", "sampling_explorer_data",
                "show_head_origin", "temperature_explorer", "temperature_explorer_data", "training_explorer",
                "training_explorer_data", "paging_explorer", "paging_explorer_data", "serving_schedule"),
    "diagrams": ("COLORS", "MASK_EXAMPLE", "ROBOT_SCORES", "THINKING_MACHINES", "cache_growth", "cache_panel",
                 "cache_positions", "four_steps", "four_steps_numbers", "heads_split_merge", "mask_before_softmax",
                 "pre_post_norm", "qkv_thinking_machines", "robot_prefixes", "BLOCK_TABLE_EXAMPLE", "block_table"),
    "checks": ("Case", "Exercise", "ExerciseReport", "Misconception", "all_exercises", "check", "exercises_for",
               "get_exercise", "grading_mode", "padding_changes_output", "run_exercise"),
    "paged_cache": ("BlockAllocator", "OutOfBlocksError", "PagedBatch", "PagedKVCache", "blocks_needed",
                    "gather_paged_kv"),
    "batching": ("Request", "ServeLog", "ServeStep", "Wait", "generate_paged", "generate_shared_prefix", "left_pad",
                 "packed_causal_mask", "serve_continuous"),
    "speculative": ("NGramDraft", "speculative_generate", "truncated_draft", "verify_draft"),
    "latent_attention": ("LatentAttention", "kv_bytes_per_token"),
    "quantized_cache": ("Int8KVCache", "dequantize_int8", "quantize_int8"),
}
# Chapter 7: efficient attention (the online softmax and tiles, linear attention, sparse patterns, costs).
_EXPORTS.update({
    "tiled_attention": ("flash_attention", "merge_partials", "online_softmax", "tile_steps"),
    "linear_attention": ("elu_feature_map", "linear_attention_parallel", "linear_attention_rnn"),
    "sparse_attention": ("block_sparse_mask", "dilated_window_mask", "global_tokens_mask", "lsh_buckets",
                         "receptive_field", "strided_mask"),
    "cost": ("best_time", "peak_tensor_bytes"),
})
_EXPORTS["widgets"] += ("online_softmax_explorer", "online_softmax_explorer_data")
_EXPORTS["diagrams"] += ("TILES", "flash_tiles")
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}

__all__ = sorted(_MODULE_OF)


def __getattr__(name: str):
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'attnkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"attnkit.{module}"), name)
    globals()[name] = value  # cache: later lookups are plain attribute reads
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
