/**
 * The vhost user-space ABI, as plain numbers and byte codecs (no FFI here).
 *
 * A vhost device (`/dev/vhost-net`, `/dev/vhost-vsock`, `/dev/vhost-vdpa-N`) moves virtqueue
 * data in the kernel on behalf of a VMM. When the guest sits behind a virtual IOMMU, the
 * addresses in the rings are IOVAs, not guest-physical addresses, and the kernel needs a
 * translation cache: the *device IOTLB*. Two designs exist:
 *
 * - The RFC (Dec 2015, never merged): three ioctls on the vhost fd. The kernel reports a miss by
 *   copying a 32-byte `struct vhost_iotlb_entry` to a user address registered beforehand and
 *   signalling an eventfd; user space answers with `VHOST_UPDATE_IOTLB`. A stock kernel does not
 *   know these numbers.
 * - Upstream (Linux 4.8+): the vhost fd itself carries messages. The kernel queues MISS messages
 *   that user space `read()`s; user space `write()`s UPDATE / INVALIDATE messages. Each message is
 *   a 72-byte envelope (`struct vhost_msg` or, once `VHOST_BACKEND_F_IOTLB_MSG_V2` is acked,
 *   `struct vhost_msg_v2`) around a `struct vhost_iotlb_msg`. It is switched on by negotiating
 *   `VIRTIO_F_ACCESS_PLATFORM` (bit 33) with `VHOST_SET_FEATURES`.
 *
 * Names are the kernel's, verbatim, so they can be grepped for in `include/uapi/linux/vhost.h`.
 * Everything is little-endian x86-64 (LP64): the layouts below are only right for that ABI.
 *
 * @module
 */

// ---------------------------------------------------------------------------------------------
// ioctl number encoding (include/uapi/asm-generic/ioctl.h; x86 uses the generic layout)
// ---------------------------------------------------------------------------------------------

/** No data moves through the argument. */
export const _IOC_NONE = 0
/** User space writes, the kernel reads the argument. */
export const _IOC_WRITE = 1
/** The kernel writes into the argument, user space reads it. */
export const _IOC_READ = 2

const _IOC_NRSHIFT = 0
const _IOC_TYPESHIFT = 8
const _IOC_SIZESHIFT = 16
const _IOC_DIRSHIFT = 30
const _IOC_SIZEMASK = (1 << 14) - 1

/**
 * Build an ioctl request number: 2 bits direction, 14 bits argument size, 8 bits type, 8 bits nr.
 * Returned as an unsigned 32-bit number (JS bit operators are signed, hence `>>> 0`).
 */
export function _IOC(dir: number, type: number, nr: number, size: number): number {
  if (!Number.isInteger(size) || size < 0 || size > _IOC_SIZEMASK) {
    throw new RangeError(`ioctl argument size ${size} does not fit in 14 bits`)
  }
  if ((dir & ~3) !== 0 || (type & ~0xff) !== 0 || (nr & ~0xff) !== 0) {
    throw new RangeError(`ioctl field out of range: dir ${dir} type ${type} nr ${nr}`)
  }
  return ((dir << _IOC_DIRSHIFT) | (size << _IOC_SIZESHIFT) | (type << _IOC_TYPESHIFT) | (nr << _IOC_NRSHIFT)) >>> 0
}
export const _IO = (type: number, nr: number): number => _IOC(_IOC_NONE, type, nr, 0)
export const _IOR = (type: number, nr: number, size: number): number => _IOC(_IOC_READ, type, nr, size)
export const _IOW = (type: number, nr: number, size: number): number => _IOC(_IOC_WRITE, type, nr, size)
export const _IOWR = (type: number, nr: number, size: number): number =>
  _IOC(_IOC_READ | _IOC_WRITE, type, nr, size)

/** The fields of an ioctl number, for messages about numbers nobody named. */
export function decodeIoctl(request: number): {dir: number; type: number; nr: number; size: number} {
  const r = request >>> 0
  return {
    dir: r >>> _IOC_DIRSHIFT,
    size: (r >>> _IOC_SIZESHIFT) & _IOC_SIZEMASK,
    type: (r >>> _IOC_TYPESHIFT) & 0xff,
    nr: r & 0xff,
  }
}

// ---------------------------------------------------------------------------------------------
// Struct sizes that go into the ioctl numbers (x86-64)
// ---------------------------------------------------------------------------------------------

const SIZEOF_INT = 4
const SIZEOF_U64 = 8
/** `struct vhost_vring_state { unsigned int index, num; }` */
export const SIZEOF_VHOST_VRING_STATE = 8
/** `struct vhost_vring_file { unsigned int index; int fd; }` */
export const SIZEOF_VHOST_VRING_FILE = 8
/** `struct vhost_vring_addr { u32 index, flags; u64 desc, used, avail, log; }` */
export const SIZEOF_VHOST_VRING_ADDR = 40
/** `struct vhost_memory { u32 nregions, padding; struct vhost_memory_region regions[]; }` header */
export const SIZEOF_VHOST_MEMORY = 8
/** `struct vhost_memory_region { u64 guest_phys_addr, memory_size, userspace_addr, flags_padding; }` */
export const SIZEOF_VHOST_MEMORY_REGION = 32
/** The RFC's `struct vhost_iotlb_entry`: 3 x u64 + 8 bytes of flags. */
export const SIZEOF_VHOST_IOTLB_ENTRY = 32
/** `struct ifreq` (16-byte name + 24-byte union). */
export const SIZEOF_IFREQ = 40

// ---------------------------------------------------------------------------------------------
// ioctls
// ---------------------------------------------------------------------------------------------

/** The vhost ioctl type byte. */
export const VHOST_VIRTIO = 0xaf

/** Kernel writes the u64 feature bits the device offers. */
export const VHOST_GET_FEATURES = _IOR(VHOST_VIRTIO, 0x00, SIZEOF_U64)
/** Kernel reads a u64 of acked features; with VIRTIO_F_ACCESS_PLATFORM it allocates the IOTLB. */
export const VHOST_SET_FEATURES = _IOW(VHOST_VIRTIO, 0x00, SIZEOF_U64)
/** No argument: binds the device to the calling process's mm and starts the worker thread. */
export const VHOST_SET_OWNER = _IO(VHOST_VIRTIO, 0x01)
/** No argument: drops ownership and all device state (memory table, IOTLB, rings). */
export const VHOST_RESET_OWNER = _IO(VHOST_VIRTIO, 0x02)
/** Kernel reads `struct vhost_memory` plus `nregions` regions (GPA -> user address table). */
export const VHOST_SET_MEM_TABLE = _IOW(VHOST_VIRTIO, 0x03, SIZEOF_VHOST_MEMORY)
/** Kernel reads `struct vhost_vring_state {index, num}`: ring size. */
export const VHOST_SET_VRING_NUM = _IOW(VHOST_VIRTIO, 0x10, SIZEOF_VHOST_VRING_STATE)
/** Kernel reads `struct vhost_vring_addr`; with an IOTLB the ring addresses are IOVAs. */
export const VHOST_SET_VRING_ADDR = _IOW(VHOST_VIRTIO, 0x11, SIZEOF_VHOST_VRING_ADDR)
/** Kernel reads `struct vhost_vring_state {index, num}`: the next available index. */
export const VHOST_SET_VRING_BASE = _IOW(VHOST_VIRTIO, 0x12, SIZEOF_VHOST_VRING_STATE)
/** Kernel reads the index and writes back `num` = last available index. */
export const VHOST_GET_VRING_BASE = _IOWR(VHOST_VIRTIO, 0x12, SIZEOF_VHOST_VRING_STATE)
/** Kernel reads `struct vhost_vring_file {index, fd}`: eventfd the guest kicks (-1 unbinds). */
export const VHOST_SET_VRING_KICK = _IOW(VHOST_VIRTIO, 0x20, SIZEOF_VHOST_VRING_FILE)
/** Kernel reads `struct vhost_vring_file {index, fd}`: eventfd the kernel signals on used buffers. */
export const VHOST_SET_VRING_CALL = _IOW(VHOST_VIRTIO, 0x21, SIZEOF_VHOST_VRING_FILE)
/** Kernel reads `struct vhost_vring_file {index, fd}`: eventfd signalled on ring errors. */
export const VHOST_SET_VRING_ERR = _IOW(VHOST_VIRTIO, 0x22, SIZEOF_VHOST_VRING_FILE)
/** Kernel reads a u64 of acked backend features (bit numbers VHOST_BACKEND_F_*). */
export const VHOST_SET_BACKEND_FEATURES = _IOW(VHOST_VIRTIO, 0x25, SIZEOF_U64)
/** Kernel writes the u64 backend features it offers (e.g. 1 << VHOST_BACKEND_F_IOTLB_MSG_V2). */
export const VHOST_GET_BACKEND_FEATURES = _IOR(VHOST_VIRTIO, 0x26, SIZEOF_U64)
/**
 * Kernel reads `struct vhost_vring_file {index, fd}` with a tap or packet socket fd; it then
 * writes the used ring's flags at once, so the used ring must already be translatable.
 */
export const VHOST_NET_SET_BACKEND = _IOW(VHOST_VIRTIO, 0x30, SIZEOF_VHOST_VRING_FILE)

/**
 * RFC: kernel reads an `int` eventfd through the pointer argument (-1 clears). A stock kernel
 * sends this unknown number to the per-ring handler, which takes the first u32 as a ring index:
 * -1 there gives ENOBUFS, 0 gives ENOTTY.
 */
export const VHOST_SET_IOTLB_FD = _IOW(VHOST_VIRTIO, 0x23, SIZEOF_INT)
/** RFC: kernel reads a 32-byte `struct vhost_iotlb_entry` (type UPDATE or INVALIDATE). */
export const VHOST_UPDATE_IOTLB = _IOW(VHOST_VIRTIO, 0x24, SIZEOF_VHOST_IOTLB_ENTRY)
/**
 * RFC: the argument *is* the user address the kernel later writes MISS requests to (it keeps the
 * pointer; nothing is copied during the call). Same nr as VHOST_SET_BACKEND_FEATURES, other size.
 */
export const VHOST_SET_IOTLB_REQUEST_ENTRY = _IOW(VHOST_VIRTIO, 0x25, SIZEOF_VHOST_IOTLB_ENTRY)

/** Kernel reads `struct ifreq` (name + flags) on /dev/net/tun and writes back the chosen name. */
export const TUNSETIFF = _IOW(0x54 /* 'T' */, 202, SIZEOF_INT)

/** Request number -> kernel name, for error messages. */
const IOCTL_NAMES: ReadonlyMap<number, string> = new Map<number, string>([
  [VHOST_GET_FEATURES, 'VHOST_GET_FEATURES'],
  [VHOST_SET_FEATURES, 'VHOST_SET_FEATURES'],
  [VHOST_SET_OWNER, 'VHOST_SET_OWNER'],
  [VHOST_RESET_OWNER, 'VHOST_RESET_OWNER'],
  [VHOST_SET_MEM_TABLE, 'VHOST_SET_MEM_TABLE'],
  [VHOST_SET_VRING_NUM, 'VHOST_SET_VRING_NUM'],
  [VHOST_SET_VRING_ADDR, 'VHOST_SET_VRING_ADDR'],
  [VHOST_SET_VRING_BASE, 'VHOST_SET_VRING_BASE'],
  [VHOST_GET_VRING_BASE, 'VHOST_GET_VRING_BASE'],
  [VHOST_SET_VRING_KICK, 'VHOST_SET_VRING_KICK'],
  [VHOST_SET_VRING_CALL, 'VHOST_SET_VRING_CALL'],
  [VHOST_SET_VRING_ERR, 'VHOST_SET_VRING_ERR'],
  [VHOST_SET_BACKEND_FEATURES, 'VHOST_SET_BACKEND_FEATURES'],
  [VHOST_GET_BACKEND_FEATURES, 'VHOST_GET_BACKEND_FEATURES'],
  [VHOST_NET_SET_BACKEND, 'VHOST_NET_SET_BACKEND'],
  [VHOST_SET_IOTLB_FD, 'VHOST_SET_IOTLB_FD'],
  [VHOST_UPDATE_IOTLB, 'VHOST_UPDATE_IOTLB'],
  [VHOST_SET_IOTLB_REQUEST_ENTRY, 'VHOST_SET_IOTLB_REQUEST_ENTRY'],
  [TUNSETIFF, 'TUNSETIFF'],
])

/** The kernel name of a request number, else its `_IOC(dir, type, nr, size)` spelling. */
export function ioctlName(request: number): string {
  const known = IOCTL_NAMES.get(request >>> 0)
  if (known !== undefined) return known
  const {dir, type, nr, size} = decodeIoctl(request)
  return `ioctl(_IOC(${dir}, 0x${type.toString(16)}, 0x${nr.toString(16)}, ${size}))`
}

// ---------------------------------------------------------------------------------------------
// Feature bits (bit numbers; use featureBit() for the u64 mask)
// ---------------------------------------------------------------------------------------------

/** virtio 1.0 semantics (little-endian rings, no legacy layout). */
export const VIRTIO_F_VERSION_1 = 32
/** The device sits behind an IOMMU: for vhost this is what turns the device IOTLB on. */
export const VIRTIO_F_ACCESS_PLATFORM = 33
/** Older name of bit 33. */
export const VIRTIO_F_IOMMU_PLATFORM = VIRTIO_F_ACCESS_PLATFORM
/** QEMU's name for "vhost device IOTLB"; the kernel never offers this bit. */
export const VHOST_F_DEVICE_IOTLB = 63
/** Dirty-page logging for migration. */
export const VHOST_F_LOG_ALL = 26
/** vhost-net: the backend handles the virtio-net header. */
export const VHOST_NET_F_VIRTIO_NET_HDR = 27

/** Backend feature: v2 message envelope with an address-space id. */
export const VHOST_BACKEND_F_IOTLB_MSG_V2 = 1
/** Backend feature: BATCH_BEGIN / BATCH_END messages (vhost-vdpa only). */
export const VHOST_BACKEND_F_IOTLB_BATCH = 2
/** Backend feature: the v2 envelope's asid is honoured (vhost-vdpa only). */
export const VHOST_BACKEND_F_IOTLB_ASID = 3

/** The u64 mask of a feature bit number. */
export function featureBit(bit: number): bigint {
  if (!Number.isInteger(bit) || bit < 0 || bit > 63) throw new RangeError(`feature bit ${bit} is not 0..63`)
  return 1n << BigInt(bit)
}

// ---------------------------------------------------------------------------------------------
// IOTLB messages (upstream)
// ---------------------------------------------------------------------------------------------

/** Read-only access: the device may read the range. */
export const VHOST_ACCESS_RO = 0x1
/** Write-only access. */
export const VHOST_ACCESS_WO = 0x2
/** Read-write access. */
export const VHOST_ACCESS_RW = 0x3

/** Kernel -> user: the device needs a translation for `iova` with `perm`. */
export const VHOST_IOTLB_MISS = 1
/** User -> kernel: add `[iova, iova + size)` -> `uaddr`. */
export const VHOST_IOTLB_UPDATE = 2
/** User -> kernel: drop every range overlapping `[iova, iova + size)`. */
export const VHOST_IOTLB_INVALIDATE = 3
/** Kernel -> user: an access was denied by `perm`. */
export const VHOST_IOTLB_ACCESS_FAIL = 4
/** User -> kernel (vhost-vdpa): start of a batch of updates. */
export const VHOST_IOTLB_BATCH_BEGIN = 5
/** User -> kernel (vhost-vdpa): end of a batch. */
export const VHOST_IOTLB_BATCH_END = 6

/** Envelope type of `struct vhost_msg`. */
export const VHOST_IOTLB_MSG = 0x1
/** Envelope type of `struct vhost_msg_v2`. */
export const VHOST_IOTLB_MSG_V2 = 0x2

/** `struct vhost_iotlb_msg`: 3 x u64 + 2 x u8, padded to 32 bytes. */
export const SIZEOF_VHOST_IOTLB_MSG = 32
/** Both envelopes: 8-byte header + 64-byte union. A successful write() returns this. */
export const SIZEOF_VHOST_MSG = 72
export const SIZEOF_VHOST_MSG_V2 = 72
/** Where the union (and so the iotlb message) starts in either envelope. */
export const VHOST_MSG_IOTLB_OFFSET = 8

/** `struct vhost_iotlb_msg`, u64 fields as bigint. */
export interface VhostIotlbMsg {
  iova: bigint
  size: bigint
  uaddr: bigint
  /** VHOST_ACCESS_* */
  perm: number
  /** VHOST_IOTLB_* */
  type: number
}

/** A decoded envelope: which version carried the message, and v2's address-space id. */
export interface VhostMsgEnvelope {
  /** VHOST_IOTLB_MSG (v1) or VHOST_IOTLB_MSG_V2. */
  version: typeof VHOST_IOTLB_MSG | typeof VHOST_IOTLB_MSG_V2
  /** Always 0 for v1. */
  asid: number
  iotlb: VhostIotlbMsg
}

const U64_MAX = (1n << 64n) - 1n

function checkU64(name: string, v: bigint): void {
  if (typeof v !== 'bigint' || v < 0n || v > U64_MAX) throw new RangeError(`${name} ${String(v)} is not a u64`)
}
function checkU8(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > 0xff) throw new RangeError(`${name} ${String(v)} is not a u8`)
}

/**
 * Write `struct vhost_iotlb_msg` at `offset` of `buf` (32 bytes; the 6 tail-padding bytes are
 * zeroed so the bytes handed to the kernel are deterministic).
 */
export function encodeIotlbMsg(msg: VhostIotlbMsg, buf: Buffer = Buffer.alloc(SIZEOF_VHOST_IOTLB_MSG), offset = 0): Buffer {
  checkU64('iova', msg.iova)
  checkU64('size', msg.size)
  checkU64('uaddr', msg.uaddr)
  checkU8('perm', msg.perm)
  checkU8('type', msg.type)
  if (offset < 0 || offset + SIZEOF_VHOST_IOTLB_MSG > buf.length) throw new RangeError('buffer too small for vhost_iotlb_msg')
  buf.writeBigUInt64LE(msg.iova, offset)
  buf.writeBigUInt64LE(msg.size, offset + 8)
  buf.writeBigUInt64LE(msg.uaddr, offset + 16)
  buf.writeUInt8(msg.perm, offset + 24)
  buf.writeUInt8(msg.type, offset + 25)
  buf.fill(0, offset + 26, offset + SIZEOF_VHOST_IOTLB_MSG)
  return buf
}

/** Read `struct vhost_iotlb_msg` at `offset` (padding ignored). */
export function decodeIotlbMsg(buf: Uint8Array, offset = 0): VhostIotlbMsg {
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength)
  if (offset < 0 || offset + SIZEOF_VHOST_IOTLB_MSG > b.length) throw new RangeError('buffer too small for vhost_iotlb_msg')
  return {
    iova: b.readBigUInt64LE(offset),
    size: b.readBigUInt64LE(offset + 8),
    uaddr: b.readBigUInt64LE(offset + 16),
    perm: b.readUInt8(offset + 24),
    type: b.readUInt8(offset + 25),
  }
}

/** v1 `struct vhost_msg`: int type = 1 at 0, 4-byte hole, union at 8. 72 bytes. */
export function encodeVhostMsg(msg: VhostIotlbMsg): Buffer {
  const buf = Buffer.alloc(SIZEOF_VHOST_MSG)
  buf.writeInt32LE(VHOST_IOTLB_MSG, 0)
  encodeIotlbMsg(msg, buf, VHOST_MSG_IOTLB_OFFSET)
  return buf
}

/** v2 `struct vhost_msg_v2`: u32 type = 2, u32 asid, union at 8. 72 bytes. */
export function encodeVhostMsgV2(msg: VhostIotlbMsg, asid = 0): Buffer {
  if (!Number.isInteger(asid) || asid < 0 || asid > 0xffffffff) throw new RangeError(`asid ${asid} is not a u32`)
  const buf = Buffer.alloc(SIZEOF_VHOST_MSG_V2)
  buf.writeUInt32LE(VHOST_IOTLB_MSG_V2, 0)
  buf.writeUInt32LE(asid, 4)
  encodeIotlbMsg(msg, buf, VHOST_MSG_IOTLB_OFFSET)
  return buf
}

/**
 * Decode a message the kernel handed out (v1 or v2 by its type word). Throws on a short buffer or
 * an unknown envelope type, since either means the reader and the kernel disagree on the protocol.
 */
export function decodeVhostMsg(buf: Uint8Array): VhostMsgEnvelope {
  if (buf.byteLength < SIZEOF_VHOST_MSG) {
    throw new RangeError(`vhost message is ${buf.byteLength} bytes, expected ${SIZEOF_VHOST_MSG}`)
  }
  const b = Buffer.from(buf.buffer, buf.byteOffset, buf.byteLength)
  const type = b.readUInt32LE(0)
  const iotlb = decodeIotlbMsg(b, VHOST_MSG_IOTLB_OFFSET)
  if (type === VHOST_IOTLB_MSG) return {version: VHOST_IOTLB_MSG, asid: 0, iotlb}
  if (type === VHOST_IOTLB_MSG_V2) return {version: VHOST_IOTLB_MSG_V2, asid: b.readUInt32LE(4), iotlb}
  throw new RangeError(`unknown vhost message type ${type}`)
}

// ---------------------------------------------------------------------------------------------
// Argument structs for the ring and tap ioctls
// ---------------------------------------------------------------------------------------------

/** `struct vhost_vring_state { u32 index; u32 num; }` */
export function encodeVringState(index: number, num: number): Buffer {
  const buf = Buffer.alloc(SIZEOF_VHOST_VRING_STATE)
  buf.writeUInt32LE(index, 0)
  buf.writeUInt32LE(num, 4)
  return buf
}

/** `struct vhost_vring_file { u32 index; int fd; }` (fd -1 unbinds). */
export function encodeVringFile(index: number, fd: number): Buffer {
  const buf = Buffer.alloc(SIZEOF_VHOST_VRING_FILE)
  buf.writeUInt32LE(index, 0)
  buf.writeInt32LE(fd, 4)
  return buf
}

/** The fields of `struct vhost_vring_addr`; with an IOTLB the three ring addresses are IOVAs. */
export interface VringAddr {
  index: number
  flags?: number
  desc: bigint
  used: bigint
  avail: bigint
  log?: bigint
}

/** `struct vhost_vring_addr`: index, flags, then desc, used, avail, log (note: used before avail). */
export function encodeVringAddr(a: VringAddr): Buffer {
  const buf = Buffer.alloc(SIZEOF_VHOST_VRING_ADDR)
  buf.writeUInt32LE(a.index, 0)
  buf.writeUInt32LE(a.flags ?? 0, 4)
  buf.writeBigUInt64LE(a.desc, 8)
  buf.writeBigUInt64LE(a.used, 16)
  buf.writeBigUInt64LE(a.avail, 24)
  buf.writeBigUInt64LE(a.log ?? 0n, 32)
  return buf
}

/** One `struct vhost_memory_region`. */
export interface MemoryRegion {
  guestPhysAddr: bigint
  memorySize: bigint
  userspaceAddr: bigint
}

/** `struct vhost_memory` followed by its regions (no regions: 8 zero bytes). */
export function encodeMemory(regions: readonly MemoryRegion[] = []): Buffer {
  const buf = Buffer.alloc(SIZEOF_VHOST_MEMORY + regions.length * SIZEOF_VHOST_MEMORY_REGION)
  buf.writeUInt32LE(regions.length, 0)
  regions.forEach((r, i) => {
    const at = SIZEOF_VHOST_MEMORY + i * SIZEOF_VHOST_MEMORY_REGION
    buf.writeBigUInt64LE(r.guestPhysAddr, at)
    buf.writeBigUInt64LE(r.memorySize, at + 8)
    buf.writeBigUInt64LE(r.userspaceAddr, at + 16)
  })
  return buf
}

/** TUN/TAP interface flags for TUNSETIFF. */
export const IFF_TUN = 0x0001
export const IFF_TAP = 0x0002
export const IFF_NO_PI = 0x1000
/** Longest interface name, including its NUL. */
export const IFNAMSIZ = 16

/** `struct ifreq` with `ifr_name` and `ifr_flags` (short at offset 16); empty name lets the kernel pick. */
export function encodeIfreq(name: string, flags: number): Buffer {
  const buf = Buffer.alloc(SIZEOF_IFREQ)
  const bytes = Buffer.from(name, 'utf8')
  if (bytes.length >= IFNAMSIZ) throw new RangeError(`interface name "${name}" is longer than ${IFNAMSIZ - 1} bytes`)
  bytes.copy(buf, 0)
  buf.writeInt16LE(flags, IFNAMSIZ)
  return buf
}

/** The interface name the kernel wrote back into a `struct ifreq`. */
export function decodeIfreqName(buf: Uint8Array): string {
  const b = Buffer.from(buf.buffer, buf.byteOffset, Math.min(buf.byteLength, IFNAMSIZ))
  const end = b.indexOf(0)
  return b.subarray(0, end < 0 ? b.length : end).toString('utf8')
}
