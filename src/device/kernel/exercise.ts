/**
 * Making a real vhost-net device miss, for `vhost-iotlb exercise`.
 *
 * The kernel concept: with the device IOTLB on, every ring address is an IOVA, and the vhost
 * worker translates it through the IOTLB before touching the ring. Nothing asks for a
 * translation until a virtqueue runs, so this sets one up the way a VMM would, minus the guest:
 *
 * 1. an empty memory table (VHOST_SET_MEM_TABLE, 0 regions): without one, attaching a backend
 *    fails with EFAULT, and with the IOTLB on it is not consulted for the rings anyway;
 * 2. ring 0 (vhost-net's receive queue) with {@link RING}'s IOVAs, which nothing maps yet, and
 *    kick/call eventfds;
 * 3. the used ring mapped first, with memory the tool owns: VHOST_NET_SET_BACKEND writes the used
 *    ring's flags at once and fails with EFAULT otherwise (QEMU pre-faults it for this reason);
 * 4. a tap interface as the backend (/dev/net/tun, IFF_TAP | IFF_NO_PI);
 * 5. a kick. The worker prefetches the ring metadata and posts a MISS for the descriptor table,
 *    then, once that is answered, one for the available ring; answered too, it goes quiet
 *    (measured on 6.1: about 8 ms after the kick under TCG).
 *
 * @module
 */
import type {ExerciseSetup, UpdateResult} from '../device.js'
import {DeviceError} from '../errors.js'
import type {Sys} from './device.js'
import {SyscallError} from './errors.js'
import * as u from './uapi.js'

/**
 * Where the rings live in IOVA space, one page each. 256 entries: the descriptor table is then
 * exactly 4 KiB (16 bytes each), the available ring 518 bytes, the used ring 2054 bytes.
 */
export const RING = {
  queue: 0,
  num: 256,
  desc: 0x100000n,
  avail: 0x101000n,
  used: 0x102000n,
  /** From the descriptor table to the end of the used ring's page. */
  span: 0x3000n,
} as const

const PAGE = 0x1000n

/** The fds the queue keeps for the device's lifetime: closing the tap fd removes the interface. */
export interface Queue {
  kick: number
  call: number
  tap: number
  tapName: string
  attached: boolean
}

export interface QueueInput {
  sys: Sys
  /** The vhost-net fd, owned, with the IOTLB on. */
  fd: number
  /** The queue of an earlier run on this device (detached), to reuse its fds. */
  queue?: Queue
  /** Maps the used ring through the device's own update path, so it lands in the shadow. */
  mapUsed(iova: bigint, size: bigint): Promise<UpdateResult>
}

/** Opens the kick/call eventfds and a tap interface; closes what it opened if a step fails. */
function openQueueFds(sys: Sys): Queue {
  const opened: number[] = []
  try {
    const kick = sys.eventfd()
    opened.push(kick)
    const call = sys.eventfd()
    opened.push(call)
    let tap: number
    try {
      tap = sys.open('/dev/net/tun')
    } catch (error) {
      if (error instanceof SyscallError && error.code === 'ENOENT') {
        throw new DeviceError('open /dev/net/tun', 'ENOENT', 'no tun device for the backend: load the tun module (modprobe tun)', {cause: error})
      }

      throw error
    }

    opened.push(tap)
    // The kernel reads the flags and writes back the name it chose (tap0, tap1, ...).
    const ifr = u.encodeIfreq('', u.IFF_TAP | u.IFF_NO_PI)
    sys.ioctl(tap, u.TUNSETIFF, ifr)
    return {kick, call, tap, tapName: u.decodeIfreqName(ifr), attached: false}
  } catch (error) {
    for (const fd of opened.reverse()) sys.close(fd)
    throw error
  }
}

/** Steps 1-5 of the module header. Returns the queue to keep and what was set up. */
export async function setUpQueue(input: QueueInput): Promise<{queue: Queue; setup: ExerciseSetup}> {
  const {sys, fd} = input
  const fresh = input.queue === undefined
  const queue = input.queue ?? openQueueFds(sys)
  try {
    // Each argument is copied in during the call; none is kept, so Buffers do.
    sys.ioctl(fd, u.VHOST_SET_MEM_TABLE, u.encodeMemory())
    sys.ioctl(fd, u.VHOST_SET_VRING_NUM, u.encodeVringState(RING.queue, RING.num))
    sys.ioctl(fd, u.VHOST_SET_VRING_BASE, u.encodeVringState(RING.queue, 0))
    sys.ioctl(fd, u.VHOST_SET_VRING_ADDR, u.encodeVringAddr({index: RING.queue, desc: RING.desc, avail: RING.avail, used: RING.used}))
    sys.ioctl(fd, u.VHOST_SET_VRING_KICK, u.encodeVringFile(RING.queue, queue.kick))
    sys.ioctl(fd, u.VHOST_SET_VRING_CALL, u.encodeVringFile(RING.queue, queue.call))
    const used_mapped = await input.mapUsed(RING.used, PAGE)
    sys.ioctl(fd, u.VHOST_NET_SET_BACKEND, u.encodeVringFile(RING.queue, queue.tap))
    queue.attached = true
    sys.eventfdWrite(queue.kick, 1n)
    return {
      queue,
      setup: {queue: RING.queue, num: RING.num, desc: RING.desc, avail: RING.avail, used: RING.used, tap: queue.tapName, used_mapped},
    }
  } catch (error) {
    if (fresh) for (const other of [queue.tap, queue.call, queue.kick]) sys.close(other)
    throw error
  }
}
