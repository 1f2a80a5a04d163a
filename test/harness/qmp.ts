// The tests drive QEMU with the product's own QMP client.
export * from '../../src/qmp/index.js';
