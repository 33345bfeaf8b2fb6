import type { GuestImage } from './image.js';
import { formatWorkload, type WorkloadSpec } from './workload.js';

export interface LabDomainSpec {
  name: string;
  ramMiB: number;
  vcpus: number;
  image: GuestImage;
  workload: WorkloadSpec;
}

/** The QEMU binary the lab's domains run (the daemons probe it at start: LabDaemon.probeQemu). */
export const LAB_EMULATOR = '/usr/bin/qemu-system-x86_64';

/** Inside each daemon's own /var/lib/libvirt and /var/log/libvirt, so source and destination never share a file. */
export const serialSocketInside = (name: string) => `/var/lib/libvirt/qemu/${name}.serial`;
export const consoleLogInside = (name: string) => `/var/log/libvirt/qemu/${name}.console.log`;

/**
 * The lab guest as a libvirt domain: TCG, the lab kernel and initramfs booted directly, the
 * workload chosen on the kernel command line (as src/lab/lab.ts does), the serial console on a
 * unix socket (heartbeats and the integrity check) and logged to a file, no disk, no NIC, no
 * balloon, no USB. RAM is a shared memfd so the lab can hold the source's RAM past QEMU's exit
 * (see libvirt-ram.ts).
 */
export function labDomainXml(spec: LabDomainSpec): string {
  const x = escapeXml;
  const cmdline = `console=ttyS0 quiet panic=-1 kvmw=${formatWorkload(spec.workload)}`;
  return `<domain type='qemu'>
  <name>${x(spec.name)}</name>
  <memory unit='MiB'>${spec.ramMiB}</memory>
  <vcpu>${spec.vcpus}</vcpu>
  <memoryBacking><source type='memfd'/><access mode='shared'/></memoryBacking>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>${x(spec.image.kernel)}</kernel>
    <initrd>${x(spec.image.initrd)}</initrd>
    <cmdline>${x(cmdline)}</cmdline>
  </os>
  <!-- Without ACPI libvirt passes acpi=off, and with shared memfd RAM the guest's heartbeat then
       jitters (172 vs 300 beats in 15 s, measured): the stall metric would blame the driver. -->
  <features><acpi/></features>
  <!-- No USB controller (libvirt adds piix3-uhci otherwise): the QMP lab's QEMU has none. -->
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>destroy</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>${LAB_EMULATOR}</emulator>
    <serial type='unix'>
      <source mode='bind' path='${x(serialSocketInside(spec.name))}'/>
      <log file='${x(consoleLogInside(spec.name))}' append='on'/>
      <target port='0'/>
    </serial>
    <controller type='usb' model='none'/>
    <memballoon model='none'/>
  </devices>
</domain>
`;
}

function escapeXml(s: string): string {
  return s.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);
}
