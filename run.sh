#!/usr/bin/env bash
# One entry point for a fresh Debian/Ubuntu machine with Python 3.10+:
#   bash run.sh irdrop [options]   the IR-drop study: the embedded default sweep (array size 32 to
#                                  256, wires 0.1 to 10 ohm, passive and 1T1R) -> results/irdrop.h5,
#                                  plots in results/irdrop/, summary table printed; run again to
#                                  resume or re-show (--overwrite recomputes)
#   bash run.sh study CMD [args]   circuitsim study init|run|show|plot (README: Studies)
#   bash run.sh test [pytest args] the whole test suite
#   bash run.sh bench [options]    the benchmarks (benchmarks/README.md)
#   bash run.sh validate [options] cross-check against ngspice (circuitsim validate --help)
# It installs what each command needs, once: Debian packages when run as root (SuiteSparse for
# CHOLMOD and OpenBLAS always; ngspice and its shared library for test and validate; cairo and
# pkg-config for the badcrossbar benchmark only) and a virtual environment in .venv with the
# project and its extras.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
VENV=.venv

apt_core="libsuitesparse-dev libopenblas0-pthread"
apt_spice="ngspice libngspice0 libngspice0-dev"
apt_bench="libcairo2-dev pkg-config"

setup_system() {
    local missing="" packages="$apt_core"
    case "${1:-}" in
        test|validate) packages="$packages $apt_spice" ;;
        bench) packages="$packages $apt_spice $apt_bench" ;;
    esac
    # Debian's python3 needs python3-venv for "python3 -m venv"
    "$PY" -c "import ensurepip" >/dev/null 2>&1 || missing="python3-venv"
    for p in $packages; do
        dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
    done
    [ -z "$missing" ] && return 0
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "run.sh: installing Debian packages:$missing" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
    else
        echo "run.sh: missing Debian packages:$missing (install them as root; continuing)" >&2
    fi
}

setup_python() {
    local extras="test,cholmod,spice,layers,studies"
    [ "${1:-}" = bench ] && extras="$extras,bench"
    local stamp="$VENV/.installed-$(cat pyproject.toml | sha256sum | cut -c1-16)-${extras//,/-}"
    [ -f "$stamp" ] && return 0
    [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
    "$VENV/bin/python" -m pip install -q --upgrade pip >/dev/null
    if ! "$VENV/bin/python" -m pip install -q -e ".[$extras]"; then
        echo "run.sh: optional extras failed to install; installing the core and test extras" >&2
        "$VENV/bin/python" -m pip install -q -e ".[test]"
    fi
    touch "$stamp"
}

cmd=${1:-}
[ $# -gt 0 ] && shift
case "$cmd" in
    irdrop) setup_system irdrop; setup_python
        mode=--resume
        for a in "$@"; do case "$a" in --overwrite|--resume) mode="" ;; esac; done
        mkdir -p results
        exec "$VENV/bin/python" -m circuitsim study run -o results/irdrop.h5 \
            --plots results/irdrop $mode "$@" ;;
    study) setup_system study; setup_python; exec "$VENV/bin/python" -m circuitsim study "$@" ;;
    test) setup_system test; setup_python; exec "$VENV/bin/python" -m pytest -q "$@" ;;
    bench) setup_system bench; setup_python bench; exec "$VENV/bin/python" benchmarks/run.py "$@" ;;
    validate) setup_system validate; setup_python; exec "$VENV/bin/python" -m circuitsim validate "$@" ;;
    *) echo "usage: bash run.sh {irdrop|study|test|bench|validate} [options]" >&2; exit 2 ;;
esac
