/**
 * The syntax error Go's encoding/json (json.Decoder) reports for a body, in
 * its words: "invalid character 'b' looking for beginning of object key
 * string", "unexpected EOF", ... Docker clients show these texts to users, so
 * a malformed body gets the message Docker would give. Only called after
 * JSON.parse failed; returns undefined when it finds nothing to say.
 */

class SyntaxFail extends Error {}

/** Go's quoteChar (encoding/json/scanner.go). */
function quoteChar(c: string): string {
  if (c === "'") return "'\\''";
  if (c === '"') return "'\"'";
  const q = JSON.stringify(c);
  return `'${q.slice(1, -1)}'`;
}

export function goJsonError(text: string): string | undefined {
  let i = 0;
  const n = text.length;
  const ws = () => {
    while (i < n && ' \t\r\n'.includes(text[i]!)) i++;
  };
  const fail = (context: string): never => {
    if (i >= n) throw new SyntaxFail('unexpected EOF');
    throw new SyntaxFail(`invalid character ${quoteChar(text[i]!)} ${context}`);
  };
  const literal = (word: string) => {
    for (let k = 0; k < word.length; k++, i++) {
      if (i >= n) fail('');
      if (text[i] !== word[k]) {
        if (k === 0) fail('looking for beginning of value');
        fail(`in literal ${word} (expecting ${quoteChar(word[k]!)})`);
      }
    }
  };
  const string = () => {
    i++; // opening quote
    while (true) {
      if (i >= n) fail('');
      const c = text[i]!;
      if (c === '"') {
        i++;
        return;
      }
      if (c === '\\') {
        i++;
        if (i >= n) fail('');
        const e = text[i]!;
        if (e === 'u') {
          i++;
          for (let k = 0; k < 4; k++, i++) {
            if (i >= n) fail('');
            if (!/[0-9a-fA-F]/.test(text[i]!)) fail('in \\u hexadecimal character escape');
          }
          continue;
        }
        if (!'"\\/bfnrt'.includes(e)) fail('in string escape code');
        i++;
        continue;
      }
      if (c < ' ') fail('in string literal');
      i++;
    }
  };
  const number = () => {
    if (text[i] === '-') i++;
    if (i >= n) fail('');
    if (text[i] === '0') i++;
    else if (/[1-9]/.test(text[i]!)) while (i < n && /[0-9]/.test(text[i]!)) i++;
    else fail('in numeric literal');
    if (text[i] === '.') {
      i++;
      if (i >= n) fail('');
      if (!/[0-9]/.test(text[i]!)) fail('after decimal point in numeric literal');
      while (i < n && /[0-9]/.test(text[i]!)) i++;
    }
    if (text[i] === 'e' || text[i] === 'E') {
      i++;
      if (text[i] === '+' || text[i] === '-') i++;
      if (i >= n) fail('');
      if (!/[0-9]/.test(text[i]!)) fail('in exponent of numeric literal');
      while (i < n && /[0-9]/.test(text[i]!)) i++;
    }
  };
  const value = (): void => {
    ws();
    if (i >= n) fail('');
    const c = text[i]!;
    if (c === '{') {
      i++;
      ws();
      if (text[i] === '}') {
        i++;
        return;
      }
      while (true) {
        ws();
        if (text[i] !== '"') fail('looking for beginning of object key string');
        string();
        ws();
        if (text[i] !== ':') fail('after object key');
        i++;
        value();
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === '}') {
          i++;
          return;
        }
        fail('after object key:value pair');
      }
    }
    if (c === '[') {
      i++;
      ws();
      if (text[i] === ']') {
        i++;
        return;
      }
      while (true) {
        value();
        ws();
        if (text[i] === ',') {
          i++;
          continue;
        }
        if (text[i] === ']') {
          i++;
          return;
        }
        fail('after array element');
      }
    }
    if (c === '"') return string();
    if (c === '-' || /[0-9]/.test(c)) return number();
    if (c === 't') return literal('true');
    if (c === 'f') return literal('false');
    if (c === 'n') return literal('null');
    fail('looking for beginning of value');
  };
  try {
    value();
    return undefined;
  } catch (e) {
    if (e instanceof SyntaxFail) return e.message;
    throw e;
  }
}
