//! `--enforce-budget` and device-memory accounting.
//!
//! A plan promises to stay inside `budget_bytes` of device memory. On a GPU
//! larger than the budget nothing would notice an overrun, so with
//! `enforce_budget` we first take all free memory beyond the budget as
//! *ballast*: afterwards any allocation past the budget (ours, cuBLAS's, the
//! driver's lazy ones) fails loudly instead of borrowing the spare memory.
//!
//! "Ours" is measured as device memory in use (`total - free`) minus what was
//! in use when our context had just been created (other processes and the
//! context itself, which the GPU profile's usable bytes already leave out)
//! minus the ballast. The peak of that is what we report.

use super::context::{mem_info, DeviceBuffer, Gpu};
use super::error::CudaError;

const CHUNK_ALIGN: u64 = 2 << 20;

/// Tracks this process's device memory and holds the ballast.
pub struct Memory {
    used_at_open: u64,
    ballast: Vec<DeviceBuffer>,
    pub ballast_bytes: u64,
    pub peak_bytes: u64,
}

impl Memory {
    pub fn new(gpu: &Gpu) -> Memory {
        Memory { used_at_open: gpu.used_at_open, ballast: Vec::new(), ballast_bytes: 0, peak_bytes: 0 }
    }

    /// Device memory this process holds beyond its context, ballast excluded;
    /// updates the peak.
    pub fn sample(&mut self) -> Result<u64, CudaError> {
        let (free, total) = mem_info()?;
        let ours = (total - free).saturating_sub(self.used_at_open).saturating_sub(self.ballast_bytes);
        self.peak_bytes = self.peak_bytes.max(ours);
        Ok(ours)
    }

    /// Allocates ballast so that at most `budget - ours` bytes stay free.
    /// Returns the bytes left to the process under the budget.
    pub fn enforce(&mut self, gpu: &Gpu, budget: u64) -> Result<u64, CudaError> {
        let ours = self.sample()?;
        if ours > budget {
            return Err(CudaError::Budget(format!(
                "this process already holds {ours} bytes of device memory (kernels, cuBLAS) before the arena, \
                 more than the plan's budget of {budget}"
            )));
        }
        let allowed = budget - ours;
        let (free, _) = mem_info()?;
        let mut left = free.saturating_sub(allowed) / CHUNK_ALIGN * CHUNK_ALIGN;
        let mut chunk = left;
        while left >= CHUNK_ALIGN {
            let size = (chunk.min(left) / CHUNK_ALIGN * CHUNK_ALIGN).max(CHUNK_ALIGN);
            match DeviceBuffer::alloc(gpu, size, "the budget ballast") {
                Ok(b) => {
                    self.ballast.push(b);
                    self.ballast_bytes += size;
                    left -= size;
                }
                // Fragmented or reserved memory: try smaller pieces; what
                // cannot be taken at all cannot be borrowed by us either.
                Err(_) if chunk > CHUNK_ALIGN => chunk /= 2,
                Err(_) => break,
            }
        }
        Ok(allowed)
    }
}
