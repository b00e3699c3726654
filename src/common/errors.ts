/**
 * Typed errors carrying the HTTP status Docker's API uses for each error kind
 * (moby errdefs: invalid parameter 400, forbidden 403, not found 404,
 * conflict 409, unavailable 503, system 500). The API layer maps any thrown
 * CoveError to `{"message": ...}` with its status; messages use Docker's wording.
 */
export class CoveError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
    this.name = new.target.name;
  }
}
export class InvalidParameter extends CoveError {
  constructor(message: string) {
    super(message, 400);
  }
}
export class Forbidden extends CoveError {
  constructor(message: string) {
    super(message, 403);
  }
}
export class NotFound extends CoveError {
  constructor(message: string) {
    super(message, 404);
  }
}
export class Conflict extends CoveError {
  constructor(message: string) {
    super(message, 409);
  }
}
/** 304: start of a running container, stop of a stopped one. */
export class NotModified extends CoveError {
  constructor(message = 'not modified') {
    super(message, 304);
  }
}
export class Unavailable extends CoveError {
  constructor(message: string) {
    super(message, 503);
  }
}
export class NotImplemented extends CoveError {
  constructor(message: string) {
    super(message, 501);
  }
}
export class SystemError extends CoveError {
  constructor(message: string) {
    super(message, 500);
  }
}

export function statusOf(err: unknown): number {
  return err instanceof CoveError ? err.status : 500;
}
