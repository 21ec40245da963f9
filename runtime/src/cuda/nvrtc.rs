//! Kernel sources, compiled by NVRTC for the device's architecture at first
//! use and cached on disk as CUBIN.
//!
//! The sources and their kernels' ids are the kernels crate's
//! ([`djinn_kernels::cuda`], embedded there), so `djinn-exec` needs no CUDA
//! toolkit headers, only libnvrtc. The cache key
//! hashes the source (with the shared header), the options, the architecture
//! and the NVRTC version, so an edited kernel or a new driver never loads a
//! stale binary; a cached file the driver rejects is recompiled.

use std::collections::HashMap;
use std::ffi::{c_char, CString};
use std::path::PathBuf;
use std::sync::Arc;

use cudarc::driver::{result as drv, sys as dsys};
use cudarc::nvrtc::{result as nv, sys as nsys};
use djinn_kernels::cuda::{Kernel, Source, COMMON, SOURCES};

use super::context::{Context, Gpu};
use super::error::CudaError;

/// Options passed to NVRTC besides `-arch`. Part of the cache key.
const OPTIONS: &[&str] = &["--std=c++17", "--fmad=true"];

/// Options from `$DJINN_NVRTC_DEFINES` (whitespace-separated `-DNAME=VALUE`),
/// for tuning a kernel's compile-time constants without a rebuild
/// (run `examples/cuda_ops` under different values); part of the cache key. Anything but
/// `-D` options is ignored.
fn tuning_defines() -> Vec<String> {
    std::env::var("DJINN_NVRTC_DEFINES")
        .unwrap_or_default()
        .split_whitespace()
        .filter(|o| o.starts_with("-D") && o.len() > 2)
        .map(str::to_string)
        .collect()
}

/// The value of `-DNAME=VALUE` in `$DJINN_NVRTC_DEFINES`, for a launch
/// shape that must follow a tuned kernel constant.
fn tuning_define(name: &str) -> Option<u64> {
    let prefix = format!("-D{name}=");
    tuning_defines().iter().find_map(|o| o.strip_prefix(&prefix)?.parse().ok())
}

/// A compile-time constant of `kernel`'s source as the kernel is compiled:
/// its `$DJINN_NVRTC_DEFINES` override, else the value its text defines,
/// for a launch shape on the host that must follow it.
pub fn kernel_constant(kernel: djinn_kernels::cuda::Kernel, name: &str) -> Option<u64> {
    tuning_define(name).or_else(|| kernel.source().define(name))
}

/// Where compiled kernels are kept: `$DJINN_KERNEL_CACHE`, else
/// `$XDG_CACHE_HOME/djinn/kernels`, else `~/.cache/djinn/kernels`.
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("DJINN_KERNEL_CACHE") {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d).join("djinn/kernels"));
    }
    std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/djinn/kernels"))
}

/// 128-bit FNV-1a: stable across builds and Rust versions, unlike `DefaultHasher`.
fn fnv128(parts: &[&[u8]]) -> u128 {
    let mut h: u128 = 0x6c62272e07bb014262b821756295c58d;
    for p in parts {
        for &b in p.iter().chain(&[0xffu8]) {
            h ^= b as u128;
            h = h.wrapping_mul(0x0000000001000000000000000000013B);
        }
    }
    h
}

fn nvrtc_version() -> (i32, i32) {
    let (mut a, mut b) = (0, 0);
    // SAFETY: two out-parameters.
    let _ = unsafe { nsys::nvrtcVersion(&mut a, &mut b) };
    (a, b)
}

/// Compiles `src` to CUBIN for `arch` (`sm_90`), or returns the cached CUBIN.
/// Returns the image and whether it came from the cache.
pub fn cubin(src: &Source, arch: &str) -> Result<(Vec<u8>, Option<PathBuf>), CudaError> {
    let arch_opt = format!("-arch={arch}");
    let (maj, min) = nvrtc_version();
    let ver = format!("nvrtc {maj}.{min}");
    let key = fnv128(&[
        COMMON.as_bytes(),
        src.text.as_bytes(),
        OPTIONS.join(" ").as_bytes(),
        tuning_defines().join(" ").as_bytes(),
        arch_opt.as_bytes(),
        ver.as_bytes(),
    ]);
    let stem = src.file.trim_end_matches(".cu");
    let path = cache_dir().map(|d| d.join(format!("{stem}-{arch}-{key:032x}.cubin")));
    if let Some(p) = &path {
        if let Ok(bytes) = std::fs::read(p) {
            if !bytes.is_empty() {
                return Ok((bytes, Some(p.clone())));
            }
        }
    }
    let image = compile(src, &arch_opt, arch)?;
    if let Some(p) = &path {
        // A cache that cannot be written only costs a recompile next time.
        if let Some(dir) = p.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        let tmp = p.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, &image).is_ok() {
            let _ = std::fs::rename(&tmp, p);
        }
    }
    Ok((image, None))
}

/// Compiles (or finds in the cache) every kernel source for `arch`
/// (`sm_90`): needs libnvrtc only, no device. Returns, per file, the CUBIN's
/// size and whether it came from the cache.
pub fn compile_all(arch: &str) -> Result<Vec<(&'static str, usize, bool)>, CudaError> {
    // SAFETY: only tries to dlopen the candidate names.
    if !unsafe { nsys::is_culib_present() } {
        return Err(CudaError::LibraryMissing {
            lib: "libnvrtc",
            hint: "install the CUDA toolkit's NVRTC (libnvrtc.so) or add it to LD_LIBRARY_PATH",
        });
    }
    SOURCES.iter().map(|s| cubin(s, arch).map(|(image, cached)| (s.file, image.len(), cached.is_some()))).collect()
}

/// Runs NVRTC on `COMMON + src`, returning the CUBIN or the compiler's log.
fn compile(src: &Source, arch_opt: &str, arch: &str) -> Result<Vec<u8>, CudaError> {
    let err = |message: String| CudaError::Compile { file: src.file, arch: arch.to_string(), message };
    let text = format!("{COMMON}\n#line 1 \"{}\"\n{}", src.file, src.text);
    let text = CString::new(text).map_err(|_| err("source contains a NUL byte".into()))?;
    let name = CString::new(src.file).expect("file names have no NUL");
    let prog = nv::create_program(&text, Some(&name)).map_err(|e| err(format!("nvrtcCreateProgram: {e}")))?;
    let mut opts: Vec<String> = OPTIONS.iter().map(|s| s.to_string()).collect();
    opts.extend(tuning_defines());
    opts.push(arch_opt.to_string());
    // SAFETY: `prog` is live until the destroy below; the buffers are sized by NVRTC.
    let out = unsafe {
        let compiled = nv::compile_program(prog, &opts);
        let log = nv::get_program_log(prog).map(|l| {
            let bytes: Vec<u8> = l.iter().take_while(|&&c| c != 0).map(|&c| c as u8).collect();
            String::from_utf8_lossy(&bytes).into_owned()
        });
        let result = match compiled {
            Err(e) => Err(err(format!("{e}\n{}", log.unwrap_or_default()))),
            Ok(()) => {
                let mut size = 0usize;
                match nsys::nvrtcGetCUBINSize(prog, &mut size).result() {
                    Err(e) => Err(err(format!("nvrtcGetCUBINSize: {e}"))),
                    Ok(()) => {
                        let mut buf = vec![0u8; size];
                        nsys::nvrtcGetCUBIN(prog, buf.as_mut_ptr() as *mut c_char)
                            .result()
                            .map(|()| buf)
                            .map_err(|e| err(format!("nvrtcGetCUBIN: {e}")))
                    }
                }
            }
        };
        let _ = nv::destroy_program(prog);
        result
    };
    out
}

/// A loaded module; unloaded on drop.
struct Module {
    ctx: Arc<Context>,
    raw: dsys::CUmodule,
}

impl Drop for Module {
    fn drop(&mut self) {
        let _ = self.ctx.bind();
        // SAFETY: loaded in `Kernels::load`, unloaded once.
        unsafe {
            let _ = drv::module::unload(self.raw);
        }
    }
}

/// Every kernel of [`SOURCES`], loaded into the device's context.
pub struct Kernels {
    funcs: HashMap<Kernel, dsys::CUfunction>,
    _modules: Vec<Module>,
}

impl Kernels {
    pub fn load(gpu: &Gpu) -> Result<Kernels, CudaError> {
        gpu.bind()?;
        let arch = gpu.arch();
        let mut funcs = HashMap::new();
        let mut modules = Vec::new();
        for src in SOURCES {
            let module = load_module(gpu, src, &arch)?;
            for &k in src.kernels {
                let cname = CString::new(k.name()).expect("kernel names have no NUL");
                // SAFETY: `module.raw` is live.
                let f = unsafe { drv::module::get_function(module.raw, cname) }
                    .map_err(|_| CudaError::KernelMissing { name: k.name(), file: src.file })?;
                funcs.insert(k, f);
            }
            modules.push(module);
        }
        Ok(Kernels { funcs, _modules: modules })
    }

    pub fn get(&self, kernel: Kernel) -> Result<dsys::CUfunction, CudaError> {
        let missing = || CudaError::KernelMissing { name: kernel.name(), file: kernel.source().file };
        self.funcs.get(&kernel).copied().ok_or_else(missing)
    }
}

/// Loads `src`'s CUBIN; a cached image the driver rejects is compiled afresh.
fn load_module(gpu: &Gpu, src: &Source, arch: &str) -> Result<Module, CudaError> {
    let (image, cached) = cubin(src, arch)?;
    let load = |image: &[u8]| {
        // SAFETY: `image` is a CUBIN produced by NVRTC (or read back from our cache).
        unsafe { drv::module::load_data(image.as_ptr() as *const _) }.map_err(|e| CudaError::Driver {
            what: format!("loading the compiled kernels/cuda/{} for {arch}", src.file),
            source: e,
        })
    };
    let raw = match (load(&image), cached) {
        (Ok(raw), _) => raw,
        (Err(_), Some(path)) => {
            let _ = std::fs::remove_file(&path);
            load(&compile(src, &format!("-arch={arch}"), arch)?)?
        }
        (Err(e), None) => return Err(e),
    };
    Ok(Module { ctx: gpu.ctx.clone(), raw })
}
