#!/usr/bin/env bash
# The Raspberry Pi memory tool (`quic-edge bench memory`) in an arm64 Debian bookworm userland under qemu-user
# emulation on an x86_64 Debian 12 host, next to the same tool run natively on the same bundles.
#
#   sudo benchmarks/pi_emulated.sh                 # everything (setup, export, native, emulated, summary)
#   sudo STAGES="emulated summary" MODELS="mlp minilm" benchmarks/pi_emulated.sh
# Results: benchmarks/results/pi_memory_native_<model>_<runtime>.{json,md}, pi_memory_emulated_<model>.{json,md}
# (ExecuTorch only: onnxruntime-training has no aarch64 wheel) and pi_memory_summary.md. Env: see the variables below.
#
# Stages (env STAGES, default all, in this order): setup export native emulated summary
#   setup     apt-installs qemu-user-static, binfmt-support, debootstrap; debootstraps an arm64 bookworm root
#             (Python 3.11, as 64-bit Raspberry Pi OS bookworm); downloads the aarch64 wheels natively into the root
#             and pip-installs them, offline, into a venv inside it (chroot), plus the project with --no-deps.
#   export    exports ExecuTorch and ONNX Runtime bundles of each model in MODELS natively with the project venv.
#   native    `quic-edge bench memory` natively (x86 project venv) on all of them.
#   emulated  `quic-edge bench memory` inside the arm64 chroot on the ExecuTorch bundles.
#   summary   benchmarks/results/pi_memory_summary.md: native against emulated.
# Every stage skips work already done (markers, existing files), so the script can be rerun.
#
# Under emulation /sys is a small tmpfs, not the host's (see mount_root: torch needs an aarch64 MIDR_EL1 there).
# Why the install is not a plain `pip install executorch==1.4.1` (checked 2026-11-24 against the reachable index):
#   - executorch 1.4.1 requires coremltools==9.0 on Linux, which has no aarch64 wheel (pip would build its sdist);
#     the device loop never imports it, so executorch goes in with --no-deps plus what it imports at run time.
#   - PyPI's torch 2.13.0 aarch64 wheel is a CUDA 13 build: libtorch.so links libtorch_cuda.so, which links
#     cudart, cublas, cudnn, nccl, ... so `import torch` needs those wheels even on a Pi. Its pin
#     nvidia-nccl-cu13==2.29.7 has no aarch64 wheel on the reachable index, so torch goes in with --no-deps and
#     nvidia-nccl-cu13==2.32.3 (same soname libnccl.so.2); triton is left out (not linked). libtorch_cpu.so also
#     links libcupti.so.13 (NVIDIA's profiling interface, used only by the profiler's CUDA activities), whose
#     wheel nvidia-cuda-cupti 13 has no aarch64 build on the reachable index: a stub exporting the 21 cupti*
#     functions torch references (each returns an error code) is assembled with binutils-aarch64-linux-gnu.
#     (PyTorch's CPU-only aarch64 wheel lives on download.pytorch.org, not reachable here; a Pi should use it.)
#   - onnxruntime-training(-cpu) has no aarch64 wheel at all: the ORT training path cannot run in this userland.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROOT=${QUIC_EDGE_ARM64_ROOT:-/var/tmp/quic-edge-arm64}
WORK=${QUIC_EDGE_PI_WORK:-/var/tmp/quic-edge-pi}        # bundles exported on the host
RESULTS=${QUIC_EDGE_PI_RESULTS:-$REPO/benchmarks/results}
HOST_VENV=${QUIC_EDGE_HOST_VENV:-$REPO/.venv}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
STAGES=${STAGES:-setup export native emulated summary}
# Bundles by name: mlp; minilm (exported with MINILM_EXPORT_OPTS); minilm-b8s64 (the export default, batch 8 x 64).
MODELS=${MODELS:-mlp minilm minilm-b8s64}
LABELS=a,b,c
# Steps per model (the first step is its own phase; 2 is the minimum that gives load, first and steady).
STEPS_mlp=${STEPS_MLP:-10}
STEPS_minilm=${STEPS_MINILM:-2}          # MiniLM under emulation is slow (see MINILM_EXPORT_OPTS)
STEPS_ORT=${STEPS_ORT:-10}               # ONNX Runtime bundles (native only)
# Export options of the "minilm" bundles (native and emulated runs use the same bundles). Measured at git ee03d5c on
# a shared 2-core host: batch 1 x 32 takes 0.2 s a step natively and ~7 s emulated; "minilm-b8s64" (batch 8 x 64)
# 0.8 s and ~82 s (emulated load ~110 s). Before ee03d5c (addmm on a naive kernel) 8 x 64 took ~70 s natively.
MINILM_EXPORT_OPTS=${MINILM_EXPORT_OPTS---batch-size 1 --seq-len 32}
EMU_LABEL="aarch64 userland under qemu-user emulation on x86_64 (figures are the emulator process's; function and memory, not speed)"
NATIVE_LABEL="x86_64 native, project venv (reference for the emulated run)"

# The aarch64 wheels, fully pinned, installed with --no-deps (the closure was resolved with
# `pip install --dry-run --report` for manylinux aarch64 / cp311 on 2026-11-24).
PI_WHEELS=(
  torch==2.13.0 executorch==1.4.1 numpy==2.4.6 safetensors==0.8.0 tokenizers==0.22.2
  # what executorch.extension.training and executorch.exir._serialize import at run time
  torchao==0.18.0 flatbuffers==25.12.19 ruamel.yaml==0.19.1 tabulate==0.10.0 tqdm==4.70.1
  # torch's own pure-Python dependencies
  filelock==4.2.12 typing_extensions==4.16.0 sympy==1.14.0 mpmath==1.3.0 networkx==3.6.1 Jinja2==3.1.6
  MarkupSafe==3.0.4 fsspec==2026.9.0 packaging==26.3 PyYAML==6.0.3
  # the CUDA libraries PyPI's aarch64 torch links against (no GPU is used; they must load)
  cuda-toolkit==13.0.3.0 nvidia-cuda-runtime==13.0.96 nvidia-cublas==13.1.1.3 nvidia-cuda-nvrtc==13.0.88
  nvidia-cufft==12.0.0.61 nvidia-cufile==1.15.1.6 nvidia-curand==10.4.0.35 nvidia-cusolver==12.0.4.66
  nvidia-cusparse==12.6.3.3 nvidia-nvjitlink==13.5.37 nvidia-cudnn-cu13==9.20.0.48 nvidia-cusparselt-cu13==0.8.1
  nvidia-nccl-cu13==2.32.3 nvidia-nvshmem-cu13==3.4.5
  # tokenizers' dependencies
  huggingface_hub==1.33.0 hf-xet==1.8.0 click==8.5.1 httpx==0.28.1 httpcore==1.0.9 h11==0.16.0 anyio==4.16.0
  idna==3.20 certifi==2026.10.18
)
BUILD_WHEELS=(setuptools==84.2.1)   # only for building the project's wheel inside the root (pyproject: >=68)
AARCH64_PLATFORMS=()
for g in 17 24 26 27 28; do AARCH64_PLATFORMS+=(--platform "manylinux_2_${g}_aarch64"); done
AARCH64_PLATFORMS+=(--platform manylinux2014_aarch64 --platform linux_aarch64)

log() { printf '[pi_emulated %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
has_stage() { [[ " $STAGES " == *" $1 "* ]]; }
steps_for() { case $1 in mlp) echo "$STEPS_mlp" ;; *) echo "$STEPS_minilm" ;; esac; }
base_model() { echo "${1%%-*}"; }
export_opts() { case $1 in minilm) echo "$MINILM_EXPORT_OPTS" ;; minilm-b8s64) echo "--batch-size 8 --seq-len 64" ;; esac; }
[[ $(id -u) == 0 ]] || { echo "run as root (apt-get, debootstrap, chroot, mount)" >&2; exit 1; }

# ---- chroot mounts, undone on exit -------------------------------------------------------------------------
MOUNTED=()
unmount_all() {
  local i
  for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do umount -l "${MOUNTED[i]}" 2>/dev/null || true; done
  MOUNTED=()
}
trap unmount_all EXIT
trap 'exit 130' INT TERM
mount_root() {
  ((${#MOUNTED[@]})) && return
  mount -t proc proc "$ROOT/proc" && MOUNTED+=("$ROOT/proc")
  # Not the host's /sys: torch's oneDNN (xbyak_aarch64) reads the CPU's MIDR_EL1 from
  # /sys/devices/system/cpu/cpuN/regs/identification/midr_el1, which an x86 host lacks ("Can't open MIDR_EL1 sysfs
  # entry", then SIGSEGV in `import torch`). A tmpfs /sys gives it a Cortex-A76 r4p1 (Raspberry Pi 5) MIDR.
  mount -t tmpfs -o size=1m quic-edge-sys "$ROOT/sys" && MOUNTED+=("$ROOT/sys")
  local n i d; n=$(nproc)
  mkdir -p "$ROOT/sys/devices/system/cpu"
  for f in online possible present; do echo "0-$((n - 1))" > "$ROOT/sys/devices/system/cpu/$f"; done
  for ((i = 0; i < n; i++)); do
    d=$ROOT/sys/devices/system/cpu/cpu$i/regs/identification
    mkdir -p "$d" && echo 0x00000000414fd0b1 > "$d/midr_el1" && echo 0x0000000000000000 > "$d/revidr_el1"
  done
  mount --rbind /dev "$ROOT/dev" && mount --make-rslave "$ROOT/dev" && MOUNTED+=("$ROOT/dev")
}
in_root() {  # run a command in the arm64 root
  mount_root
  chroot "$ROOT" /usr/bin/env -i HOME=/root LANG=C.UTF-8 PATH=/opt/venv/bin:/usr/sbin:/usr/bin:/sbin:/bin "$@"
}

# ---- setup --------------------------------------------------------------------------------------------------
enable_binfmt() {
  mountpoint -q /proc/sys/fs/binfmt_misc || mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
  [[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]] || update-binfmts --enable qemu-aarch64
  grep -q enabled /proc/sys/fs/binfmt_misc/qemu-aarch64
}

setup() {
  local missing=()
  for p in qemu-user-static binfmt-support debootstrap; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "apt-get install ${missing[*]}"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  fi
  enable_binfmt

  if [[ ! -e $ROOT/.debootstrap-done ]]; then
    log "debootstrap arm64 bookworm into $ROOT"
    local t0=$SECONDS
    debootstrap --arch=arm64 --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
      bookworm "$ROOT" "$MIRROR"
    echo "$((SECONDS - t0))" > "$ROOT/.debootstrap-done"
  fi

  # Wheels: downloaded on the host (fast), installed inside the root offline (pip runs emulated).
  if [[ ! -e $ROOT/opt/wheelhouse/.done ]]; then
    log "downloading ${#PI_WHEELS[@]} aarch64 wheels into $ROOT/opt/wheelhouse"
    mkdir -p "$ROOT/opt/wheelhouse"
    "$HOST_VENV/bin/pip" download --no-deps --only-binary=:all: "${AARCH64_PLATFORMS[@]}" --python-version 3.11 \
      --implementation cp --abi cp311 --abi abi3 --abi none -d "$ROOT/opt/wheelhouse" "${PI_WHEELS[@]}" "${BUILD_WHEELS[@]}"
    touch "$ROOT/opt/wheelhouse/.done"
  fi

  if [[ ! -e $ROOT/opt/venv/.done ]]; then
    printf '%s\n' "${PI_WHEELS[@]}" > "$ROOT/opt/requirements-pi.txt"
    log "creating /opt/venv in the root and pip-installing the wheels (emulated)"
    local t0=$SECONDS
    in_root python3 -m venv /opt/venv
    in_root /opt/venv/bin/pip install --no-index --find-links /opt/wheelhouse --no-deps -r /opt/requirements-pi.txt
    echo "wheels_seconds=$((SECONDS - t0))" > "$ROOT/opt/venv/.done"
  fi
  cupti_stub

  # The project's source at HEAD (tracked, committed files only: no .venv, runs, or uncommitted edits), installed
  # with --no-deps; reinstalled whenever HEAD moves.
  local head; head=$(git -C "$REPO" rev-parse HEAD)
  if [[ "$(cat "$ROOT/opt/quic-edge-src.commit" 2>/dev/null)" != "$head" ]]; then
    log "installing the project at ${head:0:12} in the root (pip install --no-deps, emulated)"
    rm -rf "$ROOT/opt/quic-edge-src" && mkdir -p "$ROOT/opt/quic-edge-src"
    git -C "$REPO" archive "$head" | tar -x -C "$ROOT/opt/quic-edge-src"
    in_root /opt/venv/bin/pip install --no-index --find-links /opt/wheelhouse --no-deps --force-reinstall /opt/quic-edge-src
    echo "$head" > "$ROOT/opt/quic-edge-src.commit"
  fi
  log "install times: debootstrap $(cat "$ROOT/.debootstrap-done") s; $(cat "$ROOT/opt/venv/.done")"
}

cupti_stub() {  # a no-op libcupti.so.13 next to the CUDA runtime torch's RPATH searches (see the header)
  local lib=$ROOT/opt/venv/lib/python3.11/site-packages/nvidia/cu13/lib torch_cpu tmp
  [[ -e $lib/libcupti.so.13 ]] && return
  command -v aarch64-linux-gnu-as >/dev/null ||
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq binutils-aarch64-linux-gnu
  torch_cpu=$ROOT/opt/venv/lib/python3.11/site-packages/torch/lib/libtorch_cpu.so
  tmp=$(mktemp -d)
  local names; names=$(readelf --dyn-syms -W "$torch_cpu" | awk '$7 == "UND" && $8 ~ /^cupti/ {sub(/@.*/, "", $8); print $8}' | sort -u)
  { echo '.text'; for n in $names; do printf '.global %s\n.type %s, %%function\n%s:\n  mov w0, #1\n  ret\n' "$n" "$n" "$n"; done; } > "$tmp/cupti.s"
  { echo 'libcupti.so.13 { global:'; for n in $names; do echo "  $n;"; done; echo 'local: *; };'; } > "$tmp/cupti.map"
  aarch64-linux-gnu-as -o "$tmp/cupti.o" "$tmp/cupti.s"
  aarch64-linux-gnu-ld -shared -soname libcupti.so.13 --version-script "$tmp/cupti.map" -o "$lib/libcupti.so.13" "$tmp/cupti.o"
  log "stub $lib/libcupti.so.13: $(wc -w <<< "$names") functions"
  rm -rf "$tmp"
}

# ---- export (native) ----------------------------------------------------------------------------------------
bundle_dir() { echo "$WORK/bundles/$1_$2"; }   # runtime model
export_bundles() {
  for model in $MODELS; do
    for runtime in executorch ort; do
      local out opts=(); out=$(bundle_dir "$runtime" "$model")
      read -r -a opts <<< "$(export_opts "$model")"
      # a bundle is reused only if it was exported with the same options (kept next to it in .opts)
      [[ -e $out/manifest.json && "$(cat "$out.opts" 2>/dev/null)" == "${opts[*]}" ]] && continue
      log "export $runtime $model ${opts[*]}"
      rm -rf "$out" && mkdir -p "$(dirname "$out")"
      "$HOST_VENV/bin/quic-edge" export --runtime "$runtime" --model "$(base_model "$model")" --labels "$LABELS" --out "$out" "${opts[@]}"
      echo "${opts[*]}" > "$out.opts"
    done
  done
}

# ---- measurements -------------------------------------------------------------------------------------------
native() {
  mkdir -p "$RESULTS"
  for model in $MODELS; do
    for runtime in executorch ort; do
      local name="pi_memory_native_${model}_${runtime}" steps label=$NATIVE_LABEL
      [[ -e $RESULTS/$name.json ]] && continue
      [[ -n $(export_opts "$model") ]] && label="$label; exported with $(export_opts "$model")"
      steps=$([[ $runtime == ort ]] && echo "$STEPS_ORT" || steps_for "$model")
      log "native $runtime $model ($steps steps)"
      "$HOST_VENV/bin/quic-edge" bench memory --bundle "$(bundle_dir "$runtime" "$model")" --runtime "$runtime" \
        --steps "$steps" --label "$label" --json "$RESULTS/$name.json.tmp" > "$RESULTS/$name.md.tmp"
      mv "$RESULTS/$name.md.tmp" "$RESULTS/$name.md" && mv "$RESULTS/$name.json.tmp" "$RESULTS/$name.json"
    done
  done
}

emulated() {
  mkdir -p "$RESULTS" "$ROOT/opt/bundles" "$ROOT/opt/results"
  for model in $MODELS; do
    local name="pi_memory_emulated_${model}" steps label=$EMU_LABEL
    [[ -e $RESULTS/$name.json ]] && continue
    steps=$(steps_for "$model")
    [[ -n $(export_opts "$model") ]] && label="$label; exported with $(export_opts "$model")"
    rm -rf "$ROOT/opt/bundles/executorch_$model"
    cp -r "$(bundle_dir executorch "$model")" "$ROOT/opt/bundles/executorch_$model"
    log "emulated executorch $model ($steps steps)"
    local t0=$SECONDS
    in_root quic-edge bench memory --bundle "/opt/bundles/executorch_$model" --runtime executorch --steps "$steps" \
      --label "$label" --json "/opt/results/$name.json" > "$RESULTS/$name.md.tmp"
    log "emulated $model took $((SECONDS - t0)) s wall"
    cp "$ROOT/opt/results/$name.json" "$RESULTS/$name.json" && mv "$RESULTS/$name.md.tmp" "$RESULTS/$name.md"
  done
}

summary() {
  "$HOST_VENV/bin/python" - "$RESULTS" "$ROOT" $MODELS <<'EOF'
import json, sys
from pathlib import Path
results, root = Path(sys.argv[1]), Path(sys.argv[2])
rows = []
for model in sys.argv[3:]:
    for kind, name in (("native x86_64, ort", f"pi_memory_native_{model}_ort"),
                       ("native x86_64, executorch", f"pi_memory_native_{model}_executorch"),
                       ("emulated aarch64, executorch", f"pi_memory_emulated_{model}")):
        path = results / f"{name}.json"
        if not path.exists():
            continue
        r = json.loads(path.read_text())
        p = r["peak_rss_mib"]
        planned = r["runtime_memory"].get("planned_total_mib")
        batch = "; ".join(f"{k} {'x'.join(map(str, v))}" for k, v in r["batch"].items())
        rows.append(f"| {model} | {kind} | {r['runtime_version']} | {batch} | {r['steps']} | {p['load']:.0f} | "
                    f"{p['first_step']:.0f} | {p['steady']:.0f} | "
                    f"{'' if planned is None else f'{planned:.1f}'} | {r['load_seconds']:.1f} | "
                    f"{r['first_step_ms'] / 1e3:.2f} | {r['median_step_ms'] / 1e3:.2f} | "
                    f"{r['losses'][0]:.4f} -> {r['losses'][-1]:.4f} |")
info = []
for marker, text in ((root / ".debootstrap-done", "debootstrap (minbase + python3, venv, pip), s"),
                     (root / "opt/venv/.done", "pip install in the root (emulated, offline)")):
    if marker.exists():
        info.append(f"- {text}: {marker.read_text().strip()}")
def torch_build(site):
    version = site / "torch/version.py"
    return next((l.split("=", 1)[1].strip().strip("'\"") for l in version.read_text().splitlines()
                 if l.startswith("__version__")), "?") if version.exists() else "not installed"
host_site = next(Path(sys.prefix).glob("lib/python3*/site-packages"))
info.append(f"- torch builds: native {torch_build(host_site)}; emulated root "
            f"{torch_build(root / 'opt/venv/lib/python3.11/site-packages')} (PyPI's aarch64 torch is a CUDA build: its "
            "CUDA libraries load on import and count in RSS)")
commit = root / "opt/quic-edge-src.commit"
if commit.exists():
    info.append(f"- project in the root: git {commit.read_text().strip()[:12]} (git archive HEAD, pip install --no-deps)")
wheels = sorted((root / "opt/wheelhouse").glob("*.whl"), key=lambda p: -p.stat().st_size)
if wheels:
    info.append(f"- aarch64 wheels: {len(wheels)}, {sum(p.stat().st_size for p in wheels) / 1e9:.2f} GB; largest: "
                + ", ".join(f"{p.name.split('-')[0]} {p.stat().st_size / 1e6:.0f} MB" for p in wheels[:6]))
text = "\n".join([
    "# Training memory on the device loop: native x86_64 against an emulated aarch64 userland",
    "",
    "Made by benchmarks/pi_emulated.sh. Peak RSS (VmHWM) per phase in MiB, fresh process per run; under qemu-user",
    "the figures are the emulator process's (guest memory plus qemu's own: translated code, its heap), and step",
    "times are emulation times, not a Pi's. Runtime 'planned' is ExecuTorch's memory-planned buffers (from the .pte).",
    "",
    "| model | run | runtime | batch | steps | load | first step | steady | planned MiB | load s | first step s | median step s | loss |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    *rows, "", *info, ""])
(results / "pi_memory_summary.md").write_text(text)
print(text)
EOF
}

has_stage setup && setup
has_stage export && export_bundles
has_stage native && native
if has_stage emulated; then enable_binfmt; emulated; fi
has_stage summary && summary
log "done"
