export * from './controller.js';
export * from './ending.js';
export * from './sample.js';
export { PassTracker } from './pass-tracker.js';
export * from './result.js';
export { checkMigrationUri } from './uri.js';
export type { RegionSource } from './regions.js';
