/** Go's encoding/json syntax error texts for malformed request bodies. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { goJsonError } from '../../src/api/gojson.js';

test("malformed bodies get the words of Go's json.Decoder", () => {
  const cases: Array<[string, string | undefined]> = [
    ['{bad', "invalid character 'b' looking for beginning of object key string"],
    ['{"Name": }', "invalid character '}' looking for beginning of value"],
    ['{"Name": "x"', 'unexpected EOF'],
    ['[1,2', 'unexpected EOF'],
    ['{"a":1 "b":2}', `invalid character '"' after object key:value pair`],
    ['{"a" 1}', "invalid character '1' after object key"],
    ['[1 2]', "invalid character '2' after array element"],
    ['trx', "invalid character 'x' in literal true (expecting 'u')"],
    ['{"a":"\\q"}', "invalid character 'q' in string escape code"],
    ['"a\nb"', "invalid character '\\n' in string literal"],
    ['-x', "invalid character 'x' in numeric literal"],
    ["'x'", "invalid character '\\'' looking for beginning of value"],
    ['{"a":[1,{"b":null}],"c":-1.5e3}', undefined],
  ];
  for (const [text, want] of cases) assert.equal(goJsonError(text), want, JSON.stringify(text));
});
