// ESLint (flat config) with typescript-eslint, type-aware: `npm run lint`.
// Chosen rules find real bugs in a daemon that must never die; style is prettier's job (`npm run format`).
import tseslint from 'typescript-eslint';

/** Rules of plain JavaScript that find bugs, for the TypeScript sources and the .mjs scripts alike. */
const coreRules = {
  'no-async-promise-executor': 'error',
  'no-compare-neg-zero': 'error',
  'no-cond-assign': ['error', 'except-parens'],
  'no-constant-binary-expression': 'error',
  'no-debugger': 'error',
  'no-dupe-else-if': 'error',
  'no-duplicate-case': 'error',
  'no-empty-pattern': 'error',
  'no-fallthrough': 'error',
  'no-self-assign': 'error',
  'no-self-compare': 'error',
  'no-sparse-arrays': 'error',
  'no-unsafe-finally': 'error',
  'no-unsafe-negation': 'error',
  'no-unreachable': 'error',
  'no-useless-backreference': 'error',
  'use-isnan': 'error',
  'valid-typeof': 'error',
  'no-var': 'error',
  'prefer-const': ['error', { destructuring: 'all', ignoreReadBeforeAssign: true }],
  eqeqeq: ['error', 'always', { null: 'ignore' }],
};

export default tseslint.config(
  {
    ignores: ['dist/**', 'build/**', 'native/**', 'node_modules/**', 'bin/**', '**/*.js', '**/*.mjs', '!scripts/*.mjs'],
  },
  {
    files: ['**/*.ts'],
    languageOptions: {
      parser: tseslint.parser,
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    plugins: { '@typescript-eslint': tseslint.plugin },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: {
      // A promise nobody awaits or catches: its rejection is an unhandled rejection, which ends node.
      // node:test's test()/describe()/it() return promises the runner itself awaits: calling them bare is the idiom.
      '@typescript-eslint/no-floating-promises': [
        'error',
        {
          ignoreVoid: true,
          allowForKnownSafeCalls: [
            { from: 'package', package: 'node:test', name: ['test', 'describe', 'it', 'suite', 'before', 'after'] },
          ],
        },
      ],
      // An async function where a callback's result is ignored (event handlers, forEach): same hazard.
      '@typescript-eslint/no-misused-promises': [
        'error',
        { checksVoidReturn: { arguments: false, attributes: false } },
      ],
      '@typescript-eslint/await-thenable': 'error',
      '@typescript-eslint/only-throw-error': 'error',
      // Off: every hit re-rejects a caught value (`catch (e) { return Promise.reject(e) }`), typed unknown but an Error.
      '@typescript-eslint/prefer-promise-reject-errors': 'off',
      '@typescript-eslint/no-for-in-array': 'error',
      '@typescript-eslint/no-implied-eval': 'error',
      '@typescript-eslint/no-duplicate-enum-values': 'error',
      '@typescript-eslint/no-unsafe-declaration-merging': 'error',
      '@typescript-eslint/no-array-delete': 'error',
      // Off: every hit stringifies a value parsed from JSON (typed unknown/{}), which is a string or number there.
      '@typescript-eslint/no-base-to-string': 'off',
      '@typescript-eslint/switch-exhaustiveness-check': ['error', { considerDefaultExhaustiveForUnions: true }],
      ...coreRules,
    },
  },
  // The build and test scripts (plain ESM JavaScript, no type information): the same core rules.
  {
    files: ['scripts/*.mjs'],
    languageOptions: { ecmaVersion: 'latest', sourceType: 'module' },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
    rules: coreRules,
  },
);
