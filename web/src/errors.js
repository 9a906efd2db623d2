// The errors the demo's API rejects with: each names what was wrong and what is allowed.

/** Base class of every error the digitvae browser API raises on purpose. */
export class DigitVAEError extends Error {
  constructor(message) {
    super(message);
    this.name = new.target.name;
  }
}

/** An argument of the wrong type, length or range. */
export class InputError extends DigitVAEError {}

/** A model folder that cannot be read, is damaged, or whose graph fails. */
export class ModelError extends DigitVAEError {}
