//! The host link's generation and width (`pcie_gen`, `pcie_lanes`).
//!
//! The cost model reads only the measured bandwidth; these two fields tell a
//! reader what link produced it. They come from Linux sysfs
//! (`/sys/bus/pci/devices/<address>/current_link_{speed,width}`) read *while
//! copies run*, because an idle GPU may train its link down to save power.
//! Where sysfs has no such device (a VM that hides it, another OS), they are
//! inferred from the measured bandwidth at 16 lanes, and the profile says so.

use std::path::Path;

use cudarc::driver::{result, sys};
use serde::Serialize;

/// What the link is and how we know.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Link {
    pub gen: u32,
    pub lanes: u32,
    pub how: String,
}

/// Raw per-lane rate of each generation after line coding, GB/s (gen 1 … 6).
const LANE_GBPS: [f64; 6] = [0.25, 0.5, 0.985, 1.969, 3.938, 7.563];

/// The device's PCI address (`0000:1b:00.0`) as the driver reports it.
/// Call after `Gpu::open` (which checked the driver and its symbols).
pub fn pci_address(ordinal: usize) -> Option<String> {
    let dev = result::device::get(ordinal as i32).ok()?;
    // SAFETY: `dev` is a valid device handle; the attributes are plain integers.
    let attr = |a| unsafe { result::device::get_attribute(dev, a) }.ok();
    let domain = attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID)?;
    let bus = attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_PCI_BUS_ID)?;
    let device = attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID)?;
    Some(format!("{domain:04x}:{bus:02x}:{device:02x}.0"))
}

/// The link as sysfs reports it now for the device at `address`.
pub fn read_sysfs(root: &Path, address: &str) -> Option<Link> {
    let dir = root.join(address);
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).ok();
    let gen = gen_of_speed(&read("current_link_speed")?)?;
    let lanes: u32 = read("current_link_width")?.trim().parse().ok().filter(|&w| w > 0)?;
    Some(Link { gen, lanes, how: format!("sysfs {address}, current link while copying") })
}

/// The generation of a sysfs link speed (`32.0 GT/s PCIe`, `8 GT/s`).
pub fn gen_of_speed(text: &str) -> Option<u32> {
    let gts: f64 = text.split_whitespace().next()?.parse().ok()?;
    [2.5, 5.0, 8.0, 16.0, 32.0, 64.0].iter().position(|&g| (gts - g).abs() < 0.01).map(|i| i as u32 + 1)
}

/// The slowest generation whose 16 lanes carry `h2d_gbps` (what sysfs would
/// have said on a link of 16 lanes running at full speed).
pub fn infer(h2d_gbps: f64) -> Link {
    let gen = LANE_GBPS.iter().position(|&l| 16.0 * l >= h2d_gbps).unwrap_or(LANE_GBPS.len() - 1) as u32 + 1;
    Link { gen, lanes: 16, how: format!("inferred from the measured {h2d_gbps:.1} GB/s, 16 lanes assumed") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn speeds_map_to_generations() {
        assert_eq!(gen_of_speed("32.0 GT/s PCIe\n"), Some(5));
        assert_eq!(gen_of_speed("16.0 GT/s PCIe"), Some(4));
        assert_eq!(gen_of_speed("8 GT/s"), Some(3));
        assert_eq!(gen_of_speed("2.5 GT/s PCIe"), Some(1));
        assert_eq!(gen_of_speed("Unknown"), None);
        assert_eq!(gen_of_speed("12 GT/s"), None);
    }

    #[test]
    fn inference_picks_the_slowest_link_that_carries_the_rate() {
        assert_eq!(infer(53.0).gen, 5); // H100 SXM: above gen 4's 31.5
        assert_eq!(infer(25.0).gen, 4);
        assert_eq!(infer(12.0).gen, 3);
        assert_eq!(infer(500.0).gen, 6);
        assert!(infer(25.0).how.contains("inferred"));
    }

    #[test]
    fn sysfs_files_are_read_and_missing_ones_give_none() {
        let root = std::env::temp_dir().join(format!("djinn-pcie-{}", std::process::id()));
        let dev = root.join("0000:1b:00.0");
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::write(dev.join("current_link_speed"), "32.0 GT/s PCIe\n").unwrap();
        assert_eq!(read_sysfs(&root, "0000:1b:00.0"), None, "no width file yet");
        std::fs::write(dev.join("current_link_width"), "16\n").unwrap();
        let link = read_sysfs(&root, "0000:1b:00.0").unwrap();
        assert_eq!((link.gen, link.lanes), (5, 16));
        assert_eq!(read_sysfs(&root, "0000:02:00.0"), None);
        std::fs::remove_dir_all(&root).unwrap();
    }
}
