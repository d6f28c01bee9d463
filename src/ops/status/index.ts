/// <reference types="node" preserve="true" />
// A package entry point: its .d.ts use Node's types (EventEmitter, Buffer, NodeJS.*), and from
// TypeScript 6 on an app loads no @types package it is not told about (`types` defaults to []);
// `preserve` keeps this line in the emitted .d.ts (TypeScript 5.5+ drops it otherwise).
export { type Beacon, PRESENCE_TOPIC, PresenceBeacon, type PresenceBeaconOptions } from './beacon.js';
export { type PresenceRow, PresenceView, type PresenceViewOptions } from './view.js';
