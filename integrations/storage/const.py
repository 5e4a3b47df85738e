"""Names, defaults and the read capabilities of the storage integration."""

from __future__ import annotations

from roost.core.reads import Reads

DOMAIN = "storage"
CAP_READ = "storage.read"
CAP_MOUNT = "storage.mount"
ACTION_MOUNT = "storage.mount"

READS = Reads(state={"*": CAP_READ}, metrics={"*": CAP_READ})

# SMART is read on its own, slower schedule (the 10 s cycle reports the cached result and calls no smartctl).
DEFAULT_SMART_INTERVAL = 1800.0
DEFAULT_SMART_TIMEOUT = 60.0
# zpool and lvs are cheap but not free (lvs scans every block device): once per this, cached between.
DEFAULT_COMMAND_INTERVAL = 30.0
DEFAULT_COMMAND_TIMEOUT = 5.0
MOUNT_TIMEOUT = 30.0

DEFAULT_PATHS = {
    "smartctl": "smartctl",
    "zpool": "zpool",
    "lvs": "lvs",
    "blkid": "blkid",
    "mount": "mount",
    "mountinfo": "/proc/self/mountinfo",
    "mdstat": "/proc/mdstat",
    "sys_block": "/sys/block",
    "sys_dev_block": "/sys/dev/block",
    "sys_class_block": "/sys/class/block",
    "sys_fs_btrfs": "/sys/fs/btrfs",
    "zfs_kstat": "/proc/spl/kstat/zfs",
}

METRIC_FIELDS = {
    "smart_temperature_celsius": {"unit": "celsius", "description": "Drive temperature reported by SMART.", "label": "Temperature"},
    "smart_power_on_hours": {"unit": "count", "description": "Hours the drive has been powered on.", "label": "Power-on hours"},
    "smart_data_written_bytes": {"unit": "bytes", "description": "Data written over the drive's life.", "label": "Written"},
    "smart_reallocated_sectors": {"unit": "count", "description": "ATA attribute 5: sectors the drive has remapped.", "label": "Reallocated"},
    "smart_pending_sectors": {"unit": "count", "description": "ATA attribute 197: unstable sectors waiting to be remapped.", "label": "Pending"},
    "smart_uncorrectable_sectors": {"unit": "count", "description": "ATA attribute 198: sectors that could not be read offline.", "label": "Uncorrectable"},
    "smart_reported_uncorrectable": {"unit": "count", "description": "ATA attribute 187: errors ECC could not correct.", "label": "Reported uncorrectable"},
    "smart_crc_errors": {"unit": "count", "description": "ATA attribute 199: interface CRC errors (cable, connector).", "label": "CRC errors"},
    "smart_media_errors": {"unit": "count", "description": "NVMe media and data integrity errors.", "label": "Media errors"},
    "smart_grown_defects": {"unit": "count", "description": "SCSI grown defect list length.", "label": "Grown defects"},
    "smart_uncorrected_errors": {"unit": "count", "description": "SCSI uncorrected read, write and verify errors.", "label": "Uncorrected"},
    "smart_percentage_used": {"unit": "percent", "description": "NVMe wear: share of rated endurance used.", "label": "Wear"},
    "smart_available_spare_percent": {"unit": "percent", "description": "NVMe spare capacity left.", "label": "Spare"},
    "zpool_capacity_percent": {"unit": "percent", "description": "Share of the ZFS pool allocated.", "label": "Capacity"},
    "zpool_fragmentation_percent": {"unit": "percent", "description": "Free-space fragmentation of the ZFS pool.", "label": "Fragmentation"},
    "zpool_allocated_bytes": {"unit": "bytes", "description": "Space allocated in the ZFS pool.", "label": "Allocated"},
    "zpool_size_bytes": {"unit": "bytes", "description": "Size of the ZFS pool.", "label": "Size"},
    "zpool_errors": {"unit": "count", "description": "Read, write and checksum errors over the pool's vdevs.", "label": "Errors"},
    "zfs_arc_size_bytes": {"unit": "bytes", "description": "Size of the ZFS ARC.", "label": "ARC"},
    "zfs_arc_max_bytes": {"unit": "bytes", "description": "Largest size the ZFS ARC may grow to.", "label": "ARC max"},
    "zfs_arc_hit_percent": {"unit": "percent", "description": "ARC hits since boot, as a share of lookups.", "label": "ARC hits"},
    "md_degraded_disks": {"unit": "count", "description": "Disks missing from the md array.", "label": "Degraded"},
    "md_mismatch_count": {"unit": "count", "description": "Sectors that differed in the last md check.", "label": "Mismatches"},
    "md_sync_percent": {"unit": "percent", "description": "Progress of the md array's resync, recovery or check.", "label": "Sync"},
    "btrfs_device_errors": {"unit": "count", "description": "Errors counted over the btrfs filesystem's devices.", "label": "Errors"},
    "thin_data_percent": {"unit": "percent", "description": "Data space used in the LVM thin pool.", "label": "Thin data"},
    "thin_metadata_percent": {"unit": "percent", "description": "Metadata space used in the LVM thin pool.", "label": "Thin metadata"},
    "target_free_bytes": {"unit": "bytes", "description": "Free space on the expected storage target.", "label": "Free"},
}
