#!/usr/bin/env bash
# Makes sure what the `mpi` feature builds and runs with is present: an MPI library with its
# headers and mpirun (OpenMPI: openmpi-bin, libopenmpi-dev) and libclang (libclang-dev, for
# the bindings the mpi crate generates at build time). Debian/Ubuntu only; elsewhere it says
# what to install.
set -euo pipefail
has_mpi() {
    command -v mpirun >/dev/null && command -v mpicc >/dev/null
}
# libclang itself, not libclang-cpp (which Mesa's LLVM pulls in without the C library bindgen
# loads).
has_libclang() {
    ldconfig -p 2>/dev/null | grep -Eq 'libclang(-[0-9.]+)?\.so' \
        || compgen -G "/usr/lib/llvm-*/lib/libclang.so*" >/dev/null
}
packages=()
if ! has_mpi; then packages+=(openmpi-bin libopenmpi-dev); fi
if ! has_libclang; then packages+=(libclang-dev); fi
if [ ${#packages[@]} -eq 0 ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null; then
    echo "The mpi feature needs an MPI library with mpirun and mpicc (OpenMPI or MPICH) and libclang; install them." >&2
    exit 1
fi
echo "Installing ${packages[*]} (MPI and libclang, for the mpi feature's tests)..." >&2
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${packages[@]}" >/dev/null
