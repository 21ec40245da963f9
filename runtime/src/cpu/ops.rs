//! [`Ops`] on the host: each call turns its [`Buf`]s into typed slices of the
//! host arena and runs the CPU twin from `djinn-kernels`.
//!
//! The forward pass names operands by arena offset, so one call may need a
//! mutable slice and several shared slices of the same byte buffer. Each call
//! therefore checks every operand — inside the arena, aligned for its type,
//! of the dtype the op expects — and that no written operand overlaps any
//! other operand, and only then builds the slices from the arena's pointer.
//! With those checks the slices are exactly as disjoint as the borrow checker
//! would demand, so the `unsafe` is sound; a bad plan gets a [`CpuError`].

use std::marker::PhantomData;

use djinn_core::model::Dtype;
use djinn_kernels::{attention, elementwise, flash, matmul, rope};
use half::{bf16, f16};

use super::CpuError;
use crate::ops::{AttnShape, Buf, Ops, MAX_ROPE_PAIRS};

/// The host arena, lent to one op at a time.
pub struct CpuOps<'a> {
    ptr: *mut u8,
    len: usize,
    _arena: PhantomData<&'a mut [u8]>,
}

/// Runs `$body` with `$t` bound to the Rust type of model dtype `$dt`.
macro_rules! by_dtype {
    ($dt:expr, $op:literal, $t:ident => $body:expr) => {
        match $dt {
            Dtype::F16 => {
                type $t = f16;
                $body
            }
            Dtype::Bf16 => {
                type $t = bf16;
                $body
            }
            Dtype::F32 => Err(CpuError::Dtype { op: $op, dtype: Dtype::F32 }),
        }
    };
}

/// An element type an operand can be viewed as; `u32` views the token slots.
trait View: Copy {
    const DTYPE: Dtype;
}
impl View for f32 {
    const DTYPE: Dtype = Dtype::F32;
}
impl View for u32 {
    const DTYPE: Dtype = Dtype::F32;
}
impl View for f16 {
    const DTYPE: Dtype = Dtype::F16;
}
impl View for bf16 {
    const DTYPE: Dtype = Dtype::Bf16;
}

impl<'a> CpuOps<'a> {
    pub fn new(arena: &'a mut [u8]) -> CpuOps<'a> {
        CpuOps { ptr: arena.as_mut_ptr(), len: arena.len(), _arena: PhantomData }
    }

    /// Checks the operands of op `op`: `(buf, written)` pairs.
    fn check(&self, op: &'static str, operands: &[(Buf, bool)]) -> Result<(), CpuError> {
        for (i, &(b, written)) in operands.iter().enumerate() {
            let end = b.offset.checked_add(b.bytes()).filter(|&e| e <= self.len as u64);
            if end.is_none() {
                return Err(CpuError::OutOfArena { op, offset: b.offset, bytes: b.bytes(), arena: self.len as u64 });
            }
            if !(self.ptr as u64 + b.offset).is_multiple_of(b.dtype.size()) {
                return Err(CpuError::Misaligned { op, offset: b.offset, dtype: b.dtype });
            }
            for &(c, c_written) in &operands[i + 1..] {
                let overlap = b.offset < c.offset + c.bytes() && c.offset < b.offset + b.bytes();
                if overlap && (written || c_written) {
                    return Err(CpuError::Overlap { op, a: b.offset, b: c.offset });
                }
            }
        }
        Ok(())
    }

    /// SAFETY: `b` was checked by [`CpuOps::check`] as a read operand of this op.
    unsafe fn get<T: View>(&self, op: &'static str, b: Buf) -> Result<&'a [T], CpuError> {
        if b.dtype != T::DTYPE {
            return Err(CpuError::Dtype { op, dtype: b.dtype });
        }
        Ok(std::slice::from_raw_parts(self.ptr.add(b.offset as usize) as *const T, b.elems as usize))
    }

    /// SAFETY: `b` was checked by [`CpuOps::check`] as a written operand of this op.
    #[allow(clippy::mut_from_ref)]
    unsafe fn get_mut<T: View>(&self, op: &'static str, b: Buf) -> Result<&'a mut [T], CpuError> {
        if b.dtype != T::DTYPE {
            return Err(CpuError::Dtype { op, dtype: b.dtype });
        }
        Ok(std::slice::from_raw_parts_mut(self.ptr.add(b.offset as usize) as *mut T, b.elems as usize))
    }
}

fn n(v: u64) -> usize {
    v as usize
}

impl Ops for CpuOps<'_> {
    type Error = CpuError;

    fn embed(&mut self, x: Buf, table: Buf, tokens: Buf, count: u64, hidden: u64) -> Result<(), CpuError> {
        const OP: &str = "embed";
        self.check(OP, &[(x, true), (table, false), (tokens, false)])?;
        // SAFETY: checked above.
        unsafe {
            let ids = &self.get::<u32>(OP, tokens)?[..n(count)];
            let vocab = table.elems / hidden;
            if let Some(&bad) = ids.iter().find(|&&t| t as u64 >= vocab) {
                return Err(CpuError::Token { token: bad, vocab });
            }
            by_dtype!(table.dtype, "embed", T => {
                elementwise::embed::<T>(self.get_mut(OP, x)?, self.get(OP, table)?, ids, n(hidden));
                Ok(())
            })
        }
    }

    fn rmsnorm(&mut self, out: Buf, x: Buf, w: Buf, rows: u64, dim: u64, eps: f64) -> Result<(), CpuError> {
        const OP: &str = "rmsnorm";
        self.check(OP, &[(out, true), (x, false), (w, false)])?;
        // SAFETY: checked above.
        unsafe {
            by_dtype!(out.dtype, "rmsnorm", T => {
                elementwise::rmsnorm::<T>(self.get_mut(OP, out)?, self.get(OP, x)?, self.get(OP, w)?, n(rows), n(dim), eps as f32);
                Ok(())
            })
        }
    }

    fn matmul(&mut self, out: Buf, x: Buf, w: Buf, m: u64, nn: u64, k: u64) -> Result<(), CpuError> {
        const OP: &str = "matmul";
        self.check(OP, &[(out, true), (x, false), (w, false)])?;
        // SAFETY: checked above.
        unsafe {
            by_dtype!(w.dtype, "matmul", T => {
                let (xs, ws) = (self.get::<T>(OP, x)?, self.get::<T>(OP, w)?);
                if out.dtype == Dtype::F32 {
                    matmul::matmul::<T, f32>(self.get_mut(OP, out)?, xs, ws, n(m), n(nn), n(k));
                } else {
                    matmul::matmul::<T, T>(self.get_mut(OP, out)?, xs, ws, n(m), n(nn), n(k));
                }
                Ok(())
            })
        }
    }

    fn rope(&mut self, q: Buf, k: Buf, s: AttnShape) -> Result<(), CpuError> {
        const OP: &str = "rope";
        self.check(OP, &[(q, true), (k, true)])?;
        if !s.head_dim.is_multiple_of(2) || s.head_dim / 2 > MAX_ROPE_PAIRS as u64 {
            let message = format!("head_dim {} must be even and at most {}", s.head_dim, 2 * MAX_ROPE_PAIRS);
            return Err(CpuError::Shape { op: OP, message });
        }
        // SAFETY: checked above.
        unsafe {
            by_dtype!(q.dtype, "rope", T => {
                rope::rope::<T>(self.get_mut(OP, q)?, self.get_mut(OP, k)?, n(s.tokens), n(s.pos0),
                    n(s.num_heads), n(s.num_kv_heads), n(s.head_dim), &s.rope.inv_freq);
                Ok(())
            })
        }
    }

    fn kv_store(&mut self, kc: Buf, vc: Buf, k: Buf, v: Buf, s: AttnShape) -> Result<(), CpuError> {
        const OP: &str = "kv_store";
        self.check(OP, &[(kc, true), (vc, true), (k, false), (v, false)])?;
        // SAFETY: checked above.
        unsafe {
            by_dtype!(kc.dtype, "kv_store", T => {
                attention::kv_store::<T>(self.get_mut(OP, kc)?, self.get_mut(OP, vc)?, self.get(OP, k)?,
                    self.get(OP, v)?, n(s.tokens), n(s.pos0), n(s.num_kv_heads * s.head_dim));
                Ok(())
            })
        }
    }

    fn attention(&mut self, out: Buf, q: Buf, kc: Buf, vc: Buf, scores: Buf, s: AttnShape) -> Result<(), CpuError> {
        const OP: &str = "attention";
        if s.tokens > 1 {
            // Prefill: the streaming softmax, which needs no score scratch.
            self.check(OP, &[(out, true), (q, false), (kc, false), (vc, false)])?;
            // A window at least as wide as the sequence masks nothing: 0.
            let window = s.window.filter(|&w| w < s.pos0 + s.tokens).map_or(0, n);
            // SAFETY: checked above.
            return unsafe {
                by_dtype!(out.dtype, "attention", T => {
                    flash::attn_prefill::<T>(self.get_mut(OP, out)?, self.get(OP, q)?, self.get(OP, kc)?,
                        self.get(OP, vc)?, n(s.tokens), n(s.pos0), n(s.num_heads), n(s.num_kv_heads),
                        n(s.head_dim), window);
                    Ok(())
                })
            };
        }
        self.check(OP, &[(out, true), (scores, true), (q, false), (kc, false), (vc, false)])?;
        // SAFETY: checked above.
        unsafe {
            by_dtype!(out.dtype, "attention", T => {
                attention::attention::<T>(self.get_mut(OP, out)?, self.get(OP, q)?, self.get(OP, kc)?,
                    self.get(OP, vc)?, self.get_mut(OP, scores)?, n(s.tokens), n(s.pos0), n(s.num_heads),
                    n(s.num_kv_heads), n(s.head_dim), s.window.map_or(0, n));
                Ok(())
            })
        }
    }

    fn silu_mul(&mut self, gate: Buf, up: Buf, count: u64) -> Result<(), CpuError> {
        const OP: &str = "silu_mul";
        self.check(OP, &[(gate, true), (up, false)])?;
        // SAFETY: checked above.
        unsafe {
            by_dtype!(gate.dtype, "silu_mul", T => {
                elementwise::silu_mul::<T>(self.get_mut(OP, gate)?, self.get(OP, up)?, n(count));
                Ok(())
            })
        }
    }

    fn add_bias(&mut self, out: Buf, bias: Buf, rows: u64, count: u64) -> Result<(), CpuError> {
        const OP: &str = "add_bias";
        self.check(OP, &[(out, true), (bias, false)])?;
        if out.elems < rows * count || bias.elems < count {
            return Err(CpuError::Shape {
                op: OP,
                message: format!("{rows}x{count} rows into {} elements, bias of {}", out.elems, bias.elems),
            });
        }
        // SAFETY: checked above.
        unsafe {
            by_dtype!(out.dtype, "add_bias", T => {
                elementwise::add_bias::<T>(self.get_mut(OP, out)?, self.get(OP, bias)?, n(rows), n(count));
                Ok(())
            })
        }
    }

    fn head_rmsnorm(&mut self, x: Buf, w: Buf, rows: u64, dim: u64, eps: f64) -> Result<(), CpuError> {
        const OP: &str = "head_rmsnorm";
        self.check(OP, &[(x, true), (w, false)])?;
        if x.elems < rows * dim || w.elems < dim {
            return Err(CpuError::Shape {
                op: OP,
                message: format!("{rows}x{dim} rows in {} elements, weight of {}", x.elems, w.elems),
            });
        }
        // SAFETY: checked above.
        unsafe {
            by_dtype!(x.dtype, "head_rmsnorm", T => {
                elementwise::head_rmsnorm::<T>(self.get_mut(OP, x)?, self.get(OP, w)?, n(rows), n(dim), eps as f32);
                Ok(())
            })
        }
    }

    fn add(&mut self, x: Buf, y: Buf, count: u64) -> Result<(), CpuError> {
        const OP: &str = "add";
        self.check(OP, &[(x, true), (y, false)])?;
        // SAFETY: checked above.
        unsafe {
            by_dtype!(y.dtype, "add", T => {
                elementwise::add::<T>(self.get_mut(OP, x)?, self.get(OP, y)?, n(count));
                Ok(())
            })
        }
    }
}
