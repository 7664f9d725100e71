# Sourced by the GPU run scripts (bash): add_cublas_dirs PYTHON puts every folder that holds libcublas.so.13 on
# LD_LIBRARY_PATH, once each: $TRTD_CUDA_LIB_DIRS, the CUDA toolkit's, and the nvidia wheels' of PYTHON's site
# packages. A library built on the CPU machine names its build tree's cuBLAS in its RUNPATH, not the GPU machine's.
add_cublas_dirs() {
  local py="${1:-python3}" d
  for d in ${TRTD_CUDA_LIB_DIRS:-} /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib /usr/local/cuda-13*/targets/x86_64-linux/lib \
           "$("$py" -c 'import nvidia, os; print(os.path.join(list(nvidia.__path__)[0], "cu13", "lib"))' 2>/dev/null)"; do
    [ -n "$d" ] && [ -e "$d/libcublas.so.13" ] || continue
    case ":${LD_LIBRARY_PATH:-}:" in *":$d:"*) ;; *) export LD_LIBRARY_PATH="${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$d" ;; esac
  done
}
