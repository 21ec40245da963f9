//! Adversarial replay: the CPU backend run by a scheduler that respects
//! *only* the plan's declared events, to prove a plan's dependencies complete.
//!
//! In-order replay cannot catch a missing `wait`: every call has finished
//! before the next is issued. Here calls are queued per lane, as a GPU's
//! streams queue them, and executed later under the worst timing the events
//! permit:
//!
//! * a copy *starts* as early as its lane and its waits allow — the copy lane
//!   runs ahead of compute — and at its start its destination is poisoned
//!   with NaN bytes (0xFF: NaN as f16, bf16 and f32);
//! * a copy *completes* (its real bytes are written, its lane moves on, so
//!   its record can complete) as late as possible: only when nothing else can
//!   progress — compute blocked on it, or the copy lane needing to start its
//!   next copy while compute is blocked too;
//! * a slot is poisoned as soon as the last declared reader of its occupant
//!   (the last compute reading it before the next copy into that slot, in
//!   plan order) has finished;
//! * except: when the copy lane, were its copy in flight complete, could
//!   start a copy (at once, or after copies queued before it that overwrite
//!   nothing still to be read) over bytes that a compute issued *before* that
//!   copy has yet to read, the copy in flight completes at once and the next one starts
//!   (poisoning its destination under the pending reader). Late completion
//!   alone exposes a compute missing its wait on a copy, but hides a copy
//!   missing its wait on the slot's last reader: the copy lane would never
//!   get ahead of compute. A plan with complete events never allows the
//!   overtaking (the copy, or a step before it on the copy lane, waits on
//!   that reader), so this changes nothing for it.
//!
//! A plan whose waits are complete computes exactly what in-order replay
//! computes (the kernels are deterministic); a plan missing a wait reads NaN,
//! deterministically. Waits bind at issue time to the latest record of their
//! event, like `cudaStreamWaitEvent`.

use std::collections::{HashMap, HashSet, VecDeque};

use djinn_core::plan::{Lane, Op, PhaseName, Plan};

use super::{CpuBackend, CpuError};
use crate::backend::{Backend, EventId, Pass};
use crate::weights::Weights;

#[derive(Debug)]
enum Item {
    /// Wait for record number `gen` (1-based) of `event`; 0: never recorded, nothing to wait for.
    Wait {
        event: usize,
        gen: u64,
    },
    /// `seq`: issue order across both lanes.
    Copy {
        block: usize,
        dst: u64,
        seq: u64,
    },
    Stage(Pass),
    Compute {
        block: usize,
        weights: u64,
        pass: Pass,
        seq: u64,
    },
    Record {
        event: usize,
        gen: u64,
    },
}

pub struct AdversarialCpu {
    cpu: CpuBackend,
    copy_q: VecDeque<Item>,
    compute_q: VecDeque<Item>,
    /// The copy started (destination poisoned) but not completed.
    in_flight: Option<(usize, u64)>,
    issued: HashMap<usize, u64>,
    done: HashSet<(usize, u64)>,
    /// (phase, block) → the slot range to poison once that compute finishes.
    poison_after: HashMap<(PhaseName, usize), (u64, u64)>,
    /// Bytes of each block's image (what a compute of it reads), by block index.
    block_bytes: Vec<u64>,
    /// Copies and computes issued so far.
    seq: u64,
}

impl AdversarialCpu {
    pub fn new(plan: &Plan, weights: &Weights) -> Result<AdversarialCpu, CpuError> {
        Ok(AdversarialCpu {
            cpu: CpuBackend::new(plan, weights)?,
            copy_q: VecDeque::new(),
            compute_q: VecDeque::new(),
            in_flight: None,
            issued: HashMap::new(),
            done: HashSet::new(),
            poison_after: last_readers(plan),
            block_bytes: plan.model.blocks.iter().map(|b| b.bytes).collect(),
            seq: 0,
        })
    }

    fn lane(&mut self, lane: Lane) -> &mut VecDeque<Item> {
        match lane {
            Lane::Copy => &mut self.copy_q,
            Lane::Compute => &mut self.compute_q,
        }
    }

    fn satisfied(&self, event: usize, gen: u64) -> bool {
        gen == 0 || self.done.contains(&(event, gen))
    }

    /// Runs queued work until the compute lane is empty, copies completing as late as possible
    /// (save the overtaking of a pending reader; module doc).
    fn pump(&mut self) -> Result<(), CpuError> {
        loop {
            if self.copy_could_overtake_a_reader() {
                if let Some((block, dst)) = self.in_flight.take() {
                    self.cpu.copy(block, dst)?;
                }
            }
            if self.advance_copy_lane()? || self.advance_compute_lane()? {
                continue;
            }
            if self.compute_q.is_empty() {
                return Ok(());
            }
            match self.in_flight.take() {
                Some((block, dst)) => self.cpu.copy(block, dst)?,
                None => {
                    return Err(CpuError::Stuck(format!(
                        "compute lane waits on {:?}, copy lane on {:?}, no copy in flight",
                        self.compute_q.front(),
                        self.copy_q.front()
                    )))
                }
            }
        }
    }

    /// Whether the copy lane, once its copy in flight completed, could start a
    /// copy (past records, satisfied waits and copies that overtake nothing)
    /// over bytes that a compute issued before that copy has not yet read — a
    /// missing wait (module doc).
    fn copy_could_overtake_a_reader(&self) -> bool {
        if self.in_flight.is_none() {
            return false;
        }
        for item in &self.copy_q {
            match *item {
                Item::Record { .. } => {}
                Item::Wait { event, gen } if self.satisfied(event, gen) => {}
                // A copy that overtakes no reader could start and complete in its turn too: look past
                // it (with three or more slots the copy over a pending reader may be the second queued).
                Item::Copy { block, dst, seq } => {
                    let end = dst + self.cpu.image_len(block);
                    let overtakes = self.compute_q.iter().any(|c| match *c {
                        Item::Compute { block: b, weights, seq: s, .. } => {
                            s < seq && weights < end && dst < weights + self.block_bytes.get(b).copied().unwrap_or(0)
                        }
                        _ => false,
                    });
                    if overtakes {
                        return true;
                    }
                }
                _ => return false,
            }
        }
        false
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// One step of the copy lane that does not complete the copy in flight.
    fn advance_copy_lane(&mut self) -> Result<bool, CpuError> {
        match self.copy_q.front() {
            Some(&Item::Wait { event, gen }) if self.satisfied(event, gen) => {}
            Some(&Item::Copy { block, dst, .. }) if self.in_flight.is_none() => {
                self.cpu.poison(dst, self.cpu.image_len(block));
                self.in_flight = Some((block, dst));
            }
            Some(&Item::Record { event, gen }) if self.in_flight.is_none() => {
                self.done.insert((event, gen));
            }
            Some(Item::Stage(_) | Item::Compute { .. }) => {
                return Err(CpuError::Stuck("compute work queued on the copy lane".into()))
            }
            _ => return Ok(false),
        }
        self.copy_q.pop_front();
        Ok(true)
    }

    fn advance_compute_lane(&mut self) -> Result<bool, CpuError> {
        match self.compute_q.front() {
            Some(&Item::Wait { event, gen }) if !self.satisfied(event, gen) => return Ok(false),
            None | Some(Item::Copy { .. }) => return Ok(false),
            _ => {}
        }
        match self.compute_q.pop_front() {
            Some(Item::Stage(pass)) => self.cpu.stage(&pass)?,
            Some(Item::Compute { block, weights, pass, .. }) => {
                self.cpu.compute(block, weights, &pass)?;
                if let Some(&(offset, bytes)) = self.poison_after.get(&(pass.phase, block)) {
                    self.cpu.poison(offset, bytes);
                }
            }
            Some(Item::Record { event, gen }) => {
                self.done.insert((event, gen));
            }
            _ => {}
        }
        Ok(true)
    }
}

impl Backend for AdversarialCpu {
    type Error = CpuError;

    fn slots_warm(&mut self) -> &mut bool {
        self.cpu.slots_warm()
    }

    fn begin_pass(&mut self, pass: &Pass) -> Result<(), CpuError> {
        self.compute_q.push_back(Item::Stage(pass.clone()));
        Ok(())
    }

    fn copy_block(&mut self, block: usize, dst: u64) -> Result<(), CpuError> {
        let seq = self.next_seq();
        self.copy_q.push_back(Item::Copy { block, dst, seq });
        Ok(())
    }

    fn compute_block(&mut self, block: usize, weights: u64, pass: &Pass) -> Result<(), CpuError> {
        let seq = self.next_seq();
        self.compute_q.push_back(Item::Compute { block, weights, pass: pass.clone(), seq });
        Ok(())
    }

    /// A compute-lane step like any other, reading the block's host image (never poisoned).
    fn host_compute_block(&mut self, block: usize, pass: &Pass) -> Result<(), CpuError> {
        let weights = self.cpu.host_image(block)?;
        self.compute_block(block, weights, pass)
    }

    fn record(&mut self, lane: Lane, event: EventId) -> Result<(), CpuError> {
        let gen = self.issued.entry(event.0).or_insert(0);
        *gen += 1;
        let item = Item::Record { event: event.0, gen: *gen };
        self.lane(lane).push_back(item);
        Ok(())
    }

    fn wait(&mut self, lane: Lane, event: EventId) -> Result<(), CpuError> {
        let gen = self.issued.get(&event.0).copied().unwrap_or(0);
        self.lane(lane).push_back(Item::Wait { event: event.0, gen });
        Ok(())
    }

    fn logits(&mut self) -> Result<Vec<f32>, CpuError> {
        self.pump()?;
        Ok(self.cpu.read_logits())
    }

    fn describe(&self) -> String {
        "cpu (adversarial replay)".into()
    }
}

/// For every compute that reads a slot, whether it is the last reader of
/// that slot's occupant: whether the next step naming the slot, in plan
/// order (the rest of the phase, then the decode body, which repeats), is a
/// copy — or no step names it again. (A decode compute whose slot nothing
/// else names reads the same occupant next iteration: not the last reader.)
fn last_readers(plan: &Plan) -> HashMap<(PhaseName, usize), (u64, u64)> {
    let mut out = HashMap::new();
    for phase in [PhaseName::Prefill, PhaseName::Decode] {
        let steps = &plan.phase(phase).steps;
        for (i, step) in steps.iter().enumerate() {
            let (Op::Compute, Some(slot)) = (step.op, step.slot) else { continue };
            let later = match phase {
                PhaseName::Prefill => steps[i + 1..].iter().chain(&plan.decode.steps).collect::<Vec<_>>(),
                PhaseName::Decode => steps[i + 1..].iter().chain(&steps[..=i]).collect(),
            };
            let next = later.into_iter().find(|s| s.slot == Some(slot));
            let (Some(block), Some(region)) = (plan.model.block_index(&step.block), plan.slot_region(slot)) else {
                continue;
            };
            if next.is_none_or(|s| s.op == Op::Copy) {
                out.insert((phase, block), (region.offset, region.bytes));
            }
        }
    }
    out
}
