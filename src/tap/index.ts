export { MigrationStreamParser, type RamBlockInfo, type ParserState } from './parser.js';
export { MigrationTap, type TapStatus } from './relay.js';
