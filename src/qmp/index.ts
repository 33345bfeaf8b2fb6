export { QmpClient, type QmpEvent, type QmpConnectOptions } from './client.js';
export { QmpError, QmpConnectionError, QmpTimeoutError } from './errors.js';
export { parseQmpTarget, describeTarget, type QmpTarget } from './target.js';
