package dev.quicedge.demo

/**
 * Every name the app reads from a quic-edge bundle, checkpoint or delta, in one place.
 *
 * The Python side writes them: quic_edge/formats/bundle.py and export/common.py (manifest), export/ort.py (file
 * roles), quic_edge/formats/identity.py (the identity keys), runtimes/loop.py and quic_edge/formats/checkpoint.py
 * (checkpoint folders), quic_edge/formats/delta_file.py (delta metadata). The test
 * tests/test_android_demo.py reads the constants below from this file and checks each one against a
 * bundle exported by Python, so a rename on either side fails there and not on a phone.
 * Naming: KEY_ = top-level manifest key, SPEC_ = key of an input/target spec, OPT_ = key of the optimizer
 * entry, ROLE_ = key of manifest["files"], INPUT_/TARGET_ = tensor names, META_ = delta metadata key.
 */
object BundleFields {
    const val MANIFEST = "manifest.json"
    const val ROOT_DIGEST = "manifest.sha256"  // sha256 of manifest.json's bytes: checked before the manifest is read
    const val SIGNATURE = "manifest.sig"  // optional Ed25519 signature of the root digest (ASCII hex)
    const val FORMAT = "quic-edge-bundle"
    const val FORMAT_VERSION = 2  // this app reads bundle format 2
    const val RUNTIME_ORT = "ort"

    const val KEY_FORMAT = "format"
    const val KEY_FORMAT_VERSION = "format_version"
    const val KEY_RUNTIME = "runtime"
    const val KEY_MODEL = "model"
    const val KEY_FILES = "files"
    const val KEY_SHA256 = "sha256"
    const val KEY_INPUTS = "inputs"
    const val KEY_TARGET = "target"
    const val KEY_LABELS = "labels"
    const val KEY_OPTIMIZER = "optimizer"
    const val KEY_TRAINABLE = "trainable"
    // the identity (quic_edge/formats/identity.py): the same four keys in the manifest, checkpoints and deltas
    const val KEY_ADAPTER = "adapter"
    const val KEY_BASE_FINGERPRINT = "base_fingerprint"
    const val KEY_CONFIG = "config"
    const val KEY_BASE_DTYPE = "base_dtype"

    const val SPEC_NAME = "name"
    const val SPEC_SHAPE = "shape"
    const val SPEC_DTYPE = "dtype"
    const val SPEC_RANGE = "range"  // [low, high]: the valid values of an integer input (token ids, label ids)
    const val DTYPE_INT64 = "int64"

    const val OPT_NAME = "name"
    const val OPT_LR = "lr"
    const val OPT_GROUPS = "groups"  // optional: [{"name", "params", "lr_scale"}], a learning-rate multiplier per group
    const val OPT_PARAMS = "params"
    const val OPT_LR_SCALE = "lr_scale"

    const val ROLE_TRAINING_MODEL = "training_model"
    const val ROLE_EVAL_MODEL = "eval_model"
    const val ROLE_OPTIMIZER_MODEL = "optimizer_model"
    const val ROLE_CHECKPOINT = "checkpoint"
    const val ROLE_TOKENIZER = "tokenizer"
    const val ROLE_LABELS = "labels"

    const val INPUT_IDS = "input_ids"
    const val INPUT_ATTENTION_MASK = "attention_mask"
    const val TARGET_LABELS = "labels"
    const val EVAL_OUTPUT_LOGITS = 1  // the eval model returns (loss, logits)

    // Checkpoint folders, as runtimes/loop.py and runtimes/ort.py write them; state.json holds the step, the runtime,
    // the sha256 of every file and the identity (the KEY_ADAPTER ... KEY_BASE_DTYPE keys).
    const val CHECKPOINT_DIR = "checkpoints"
    const val CHECKPOINT_PREFIX = "ckpt-"
    const val CHECKPOINT_STATE = "state.json"
    const val CHECKPOINT_FILE = "checkpoint"

    // The personal delta's safetensors metadata, as quic_edge/delta.py writes and reads it.
    const val DELTA_FORMAT = "quic-edge-delta"
    const val DELTA_FORMAT_VERSION = "2"
    const val META_FORMAT = "format"
    const val META_FORMAT_VERSION = "format_version"
    const val META_BASE_MODEL = "base_model"
    const val META_ADAPTER = "adapter"
    const val META_BASE_FINGERPRINT = "base_fingerprint"
    const val META_CONFIG = "config"
    const val META_BASE_DTYPE = "base_dtype"
}
