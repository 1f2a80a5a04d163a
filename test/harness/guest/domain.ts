// The tiny guest as a libvirt domain: the same kernel, initramfs, RAM size and disk as GuestVm,
// with its serial console on a UNIX socket.
//
// The RAM size needs QEMU arguments of its own: libvirt rounds <memory> up to whole MiB, which
// is a multiple of 256 KiB, the size at which QEMU 7.2 loses a TCG guest's RAM updates during
// migration (see GUEST_RAM); the guest then finds blocks it "wrote" missing after the move.
// So the machine is given a RAM backend of GUEST_RAM instead of libvirt's pc.ram (later -m and
// -machine options override earlier ones; pc.ram is still made, unused and all zeros).
import { GUEST_RAM } from './vm.js';
import type { GuestBoot } from './build.js';

export interface DomainOptions {
  name: string;
  boot: GuestBoot;
  /** Raw image; the same path must hold a blank image of the same size on the destination. */
  image: string;
  consoleSocket: string;
  blocks: number;
}

export function guestDomainXml(o: DomainOptions): string {
  const ramKiB = Number(/^(\d+)k$/.exec(GUEST_RAM)![1]);
  return `<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>${o.name}</name>
  <memory unit='KiB'>${ramKiB}</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>${o.boot.kernel}</kernel>
    <initrd>${o.boot.initrd}</initrd>
    <cmdline>console=ttyS0 quiet panic=-1 nbdt.blocks=${o.blocks}</cmdline>
  </os>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='${o.image}'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <serial type='unix'>
      <source mode='bind' path='${o.consoleSocket}'/>
      <target port='0'/>
    </serial>
    <memballoon model='none'/>
  </devices>
  <qemu:commandline>
    <qemu:arg value='-object'/>
    <qemu:arg value='memory-backend-ram,id=nbdt-ram,size=${ramKiB}K'/>
    <qemu:arg value='-machine'/>
    <qemu:arg value='memory-backend=nbdt-ram'/>
    <qemu:arg value='-m'/>
    <qemu:arg value='${ramKiB}K'/>
  </qemu:commandline>
</domain>
`;
}
