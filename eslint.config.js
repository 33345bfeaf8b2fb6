import js from '@eslint/js';
import tseslint from 'typescript-eslint';

/**
 * Imports run one way (architecture.md): cli → bench, lab → drivers (migration, libvirt, sim, tap)
 * → core, policy → qemu, qmp, util. Each folder lists the folders above it, which it must not import.
 */
const LAYERS = {
  util: ['qmp', 'qemu', 'policy', 'core', 'tap', 'migration', 'libvirt', 'sim', 'lab', 'bench', 'cli'],
  qmp: ['qemu', 'policy', 'core', 'tap', 'migration', 'libvirt', 'sim', 'lab', 'bench', 'cli'],
  qemu: ['policy', 'core', 'tap', 'migration', 'libvirt', 'sim', 'lab', 'bench', 'cli'],
  policy: ['qmp', 'qemu', 'core', 'tap', 'migration', 'libvirt', 'sim', 'lab', 'bench', 'cli'],
  core: ['qmp', 'qemu', 'tap', 'migration', 'libvirt', 'sim', 'lab', 'bench', 'cli'],
  tap: ['migration', 'libvirt', 'sim', 'lab', 'bench', 'cli'],
  migration: ['tap', 'libvirt', 'sim', 'lab', 'bench', 'cli'],
  libvirt: ['tap', 'migration', 'sim', 'lab', 'bench', 'cli'],
  sim: ['qmp', 'qemu', 'tap', 'migration', 'libvirt', 'lab', 'bench', 'cli'],
  lab: ['bench', 'cli'],
  bench: ['cli'],
};

const layerRules = Object.entries(LAYERS).map(([folder, above]) => ({
  files: [`src/${folder}/**/*.ts`],
  rules: {
    'no-restricted-imports': [
      'error',
      {
        patterns: [
          {
            group: above.flatMap((f) => [`../${f}/*`, `../../${f}/*`]),
            message: `src/${folder} must not import a layer above it (architecture.md: imports run one way)`,
          },
          // The core is pure: no I/O, no clock, no processes.
          ...(folder === 'core' || folder === 'policy'
            ? [{ group: ['node:*'], message: `src/${folder} is pure: no node:* modules` }]
            : []),
        ],
      },
    ],
  },
}));

export default tseslint.config(
  { ignores: ['dist/', 'node_modules/', 'coverage/'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: 'readonly', console: 'readonly' } },
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
    },
  },
  ...layerRules,
);
