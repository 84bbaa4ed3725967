import { loadNative } from './native'

/**
 * A page-aligned, zeroed Buffer of fresh anonymous memory (only touched pages become
 * resident). O_DIRECT needs aligned memory, which JS cannot allocate itself.
 */
export function alignedBuffer (size: number): Buffer {
  return loadNative().alignedBuffer(size)
}
