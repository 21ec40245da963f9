//! The CUDA sources (`kernels/cuda/*.cu`), embedded, and a typed id for each
//! kernel they export.
//!
//! The `.cu` files and their CPU twins are one crate's business, so this is
//! the one place that names the files ([`SOURCES`]) and their entry points
//! ([`Kernel`]); the runtime compiles [`SOURCES`] with NVRTC at first use
//! (prepending [`COMMON`]) and looks each function up by its [`Kernel`]
//! instead of by a string. Embedding them means `djinn-exec` needs no CUDA
//! toolkit headers at run time, only libnvrtc. The tests below keep the table
//! and the files in step: every `extern "C" __global__` function of a file is
//! listed under it, and nothing else is.

/// Prepended to every source (16-bit float types, reductions).
pub const COMMON: &str = include_str!("../cuda/common.cuh");

/// One `.cu` file and the kernels it exports.
#[derive(Debug)]
pub struct Source {
    /// The file name under `kernels/cuda/`.
    pub file: &'static str,
    pub text: &'static str,
    pub kernels: &'static [Kernel],
}

macro_rules! kernels {
    ($($id:ident = $name:literal),* $(,)?) => {
        /// A kernel one of [`SOURCES`] exports, by its `extern "C"` name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Kernel {
            $($id),*
        }

        impl Kernel {
            /// Every kernel.
            pub const ALL: &'static [Kernel] = &[$(Kernel::$id),*];

            /// The function's name in the compiled module.
            pub const fn name(self) -> &'static str {
                match self {
                    $(Kernel::$id => $name),*
                }
            }
        }
    };
}

kernels! {
    EmbedF16 = "embed_f16",
    EmbedBf16 = "embed_bf16",
    RmsnormF16 = "rmsnorm_f16",
    RmsnormBf16 = "rmsnorm_bf16",
    RopeF16 = "rope_f16",
    RopeBf16 = "rope_bf16",
    KvStoreF16 = "kv_store_f16",
    KvStoreBf16 = "kv_store_bf16",
    AttnSoftmaxF16 = "attn_softmax_f16",
    AttnSoftmaxBf16 = "attn_softmax_bf16",
    SiluMulF16 = "silu_mul_f16",
    SiluMulBf16 = "silu_mul_bf16",
    AddF16 = "add_f16",
    AddBf16 = "add_bf16",
    ArgmaxF32 = "argmax_f32",
    SampleF32 = "sample_f32",
    CopyF32 = "copy_f32",
    GemvF16 = "gemv_f16",
    GemvBf16 = "gemv_bf16",
    GemvSiluF16 = "gemv_silu_f16",
    GemvSiluBf16 = "gemv_silu_bf16",
    RopeKvStoreF16 = "rope_kv_store_f16",
    RopeKvStoreBf16 = "rope_kv_store_bf16",
    AttnDecodeF16 = "attn_decode_f16",
    AttnDecodeBf16 = "attn_decode_bf16",
    AttnDecodeRopeF16 = "attn_decode_rope_f16",
    AttnDecodeRopeBf16 = "attn_decode_rope_bf16",
    AttnCombineF16 = "attn_combine_f16",
    AttnCombineBf16 = "attn_combine_bf16",
    AddBiasF16 = "add_bias_f16",
    AddBiasBf16 = "add_bias_bf16",
    HeadRmsnormF16 = "head_rmsnorm_f16",
    HeadRmsnormBf16 = "head_rmsnorm_bf16",
    AttnPrefillF16 = "attn_prefill_f16",
    AttnPrefillBf16 = "attn_prefill_bf16",
}

macro_rules! source {
    ($file:literal, [$($k:ident),* $(,)?]) => {
        Source { file: $file, text: include_str!(concat!("../cuda/", $file)), kernels: &[$(Kernel::$k),*] }
    };
}

pub const SOURCES: &[Source] = &[
    source!("embed.cu", [EmbedF16, EmbedBf16]),
    source!("rmsnorm.cu", [RmsnormF16, RmsnormBf16]),
    source!("rope.cu", [RopeF16, RopeBf16]),
    source!("kv_store.cu", [KvStoreF16, KvStoreBf16]),
    source!("attn_softmax.cu", [AttnSoftmaxF16, AttnSoftmaxBf16]),
    source!("silu_mul.cu", [SiluMulF16, SiluMulBf16]),
    source!("add.cu", [AddF16, AddBf16]),
    source!("argmax.cu", [ArgmaxF32]),
    source!("sample.cu", [SampleF32]),
    source!("copy.cu", [CopyF32]),
    source!("gemv.cu", [GemvF16, GemvBf16, GemvSiluF16, GemvSiluBf16]),
    source!("rope_kv_store.cu", [RopeKvStoreF16, RopeKvStoreBf16]),
    source!(
        "attn_decode.cu",
        [AttnDecodeF16, AttnDecodeBf16, AttnDecodeRopeF16, AttnDecodeRopeBf16, AttnCombineF16, AttnCombineBf16]
    ),
    source!("add_bias.cu", [AddBiasF16, AddBiasBf16]),
    source!("head_rmsnorm.cu", [HeadRmsnormF16, HeadRmsnormBf16]),
    source!("attn_prefill.cu", [AttnPrefillF16, AttnPrefillBf16]),
];

impl Source {
    /// The value of `#define NAME VALUE` in this file (its first such line):
    /// for a launch shape on the host that must follow a kernel constant
    /// (`gemv.cu`'s GEMV_WARPS), read from the text the kernel is compiled
    /// from rather than written twice.
    pub fn define(&self, name: &str) -> Option<u64> {
        self.text.lines().find_map(|line| {
            let mut words = line.trim().strip_prefix("#define ")?.split_whitespace();
            (words.next()? == name).then_some(())?;
            words.next()?.trim_end_matches('u').parse().ok()
        })
    }
}

impl Kernel {
    /// The source that exports this kernel.
    pub fn source(self) -> &'static Source {
        SOURCES.iter().find(|s| s.kernels.contains(&self)).expect("every kernel is in one source (tested)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sources_defines_are_read_from_its_text() {
        let gemv = Kernel::GemvF16.source();
        assert!(gemv.define("GEMV_WARPS").is_some_and(|w| (1..=24).contains(&w)));
        assert_eq!(gemv.define("GEMV_RESIDUAL"), Some(2), "a trailing u is a C literal suffix");
        assert_eq!(gemv.define("NO_SUCH_NAME"), None);
        assert!(Kernel::RmsnormF16.source().define("RMS_HELD").is_some_and(|h| (1..=16).contains(&h)));
        assert!(Kernel::RmsnormF16
            .source()
            .define("RMS_THREADS")
            .is_some_and(|t| t % 32 == 0 && (32..=1024).contains(&t)));
    }

    /// The names of the `extern "C" __global__` functions defined in `text`.
    fn exported(text: &str) -> Vec<&str> {
        fn name(rest: &str) -> &str {
            // `__launch_bounds__(threads, blocks)` may stand between `void` and the name.
            let rest = match rest.strip_prefix("__launch_bounds__(") {
                Some(bounds) => bounds.split_once(')').expect("__launch_bounds__ is closed").1.trim_start(),
                None => rest,
            };
            rest.split('(').next().unwrap().trim()
        }
        text.split("extern \"C\" __global__ void ").skip(1).map(name).collect()
    }

    #[test]
    fn each_source_lists_exactly_the_kernels_it_exports() {
        for s in SOURCES {
            let mut listed: Vec<&str> = s.kernels.iter().map(|k| k.name()).collect();
            let mut found = exported(s.text);
            listed.sort_unstable();
            found.sort_unstable();
            assert_eq!(listed, found, "{}", s.file);
        }
    }

    #[test]
    fn every_kernel_is_in_exactly_one_source() {
        for &k in Kernel::ALL {
            let n = SOURCES.iter().filter(|s| s.kernels.contains(&k)).count();
            assert_eq!(n, 1, "{} is exported by {n} sources", k.name());
            assert!(exported(k.source().text).contains(&k.name()));
        }
        let listed: usize = SOURCES.iter().map(|s| s.kernels.len()).sum();
        assert_eq!(listed, Kernel::ALL.len());
    }

    #[test]
    fn the_common_header_exports_no_kernel() {
        assert!(exported(COMMON).is_empty() && !COMMON.is_empty());
    }
}
