// index.ts — the public API of webgpu-quant (the package's "." export).

export * from "./errors.ts";
export { openDevice, probeAdapter, Gpu, type OpenDeviceOptions } from "./gpu/device.ts";
export { createContext, type GpuContext } from "./gpu/context.ts";
export { KernelRegistry, Kernel, type ShaderSource } from "./gpu/kernel.ts";
export { GpuTensor, type DType } from "./gpu/tensor.ts";
export { CommandBatch } from "./gpu/encoder.ts";
export { matmul } from "./nn/matmul.ts";
export { reduceStats } from "./nn/reduce.ts";
export { convertF16ToF32, convertF32ToF16 } from "./nn/convert.ts";
export { quantizeRtn } from "./quant/rtn.ts";
export { uploadPacked, downloadPacked, destroyPacked, type GpuPackedWeight } from "./quant/packed.ts";
export { qmatmul } from "./quant/matmul.ts";
export * from "./quant/formats.ts";
export { LlamaModel } from "./model/llama.ts";
export { loadConfig, parseConfig, type LlamaConfig } from "./model/config.ts";
export { evaluate, tokenStream, windows } from "./model/eval.ts";
export { generate } from "./model/generate.ts";
export { quantizeModel, type QuantizeOptions, type QuantizeReport } from "./ptq/quantize.ts";
export { RTN, type QuantMethod, type PrepareArgs } from "./ptq/method.ts";
export { AwqMethod, awqTransform, type AwqOptions, type AwqMethodOptions } from "./ptq/awq.ts";
export { SafetensorsCheckpoint, writeSafetensors } from "./io/safetensors.ts";
export { TextTokenizer } from "./io/tokenizer.ts";
