"""Every TensorRT name trtbuild's code uses, and the TensorRT versions whose code path uses it.

Qualified as in tests/trt_api/*.txt -> the TensorRT majors (or versions, "10.13") whose code path uses it.
tests/apicheck.py, run by tests/test_trt_api.py, fails when a tensorrt attribute chain in trtbuild/ is missing
here, or when a name is absent from the API list of a version it claims ("10": 10.3.0 and 10.13.3.9; "11": 11.4.0.106).
"""

from __future__ import annotations

API_USES: dict[str, tuple[str, ...]] = {
    "__version__": ("10", "11"),  # tensorrt_info()
    # runtime, the same in 10.x and 11.x
    "Runtime.deserialize_cuda_engine": ("10", "11"),
    "ICudaEngine.num_io_tensors": ("10", "11"),
    "ICudaEngine.get_tensor_name": ("10", "11"),
    "ICudaEngine.get_tensor_mode": ("10", "11"),
    "ICudaEngine.get_tensor_shape": ("10", "11"),
    "ICudaEngine.get_tensor_dtype": ("10", "11"),
    "ICudaEngine.create_engine_inspector": ("10", "11"),
    "IExecutionContext.set_input_shape": ("10", "11"),
    "IExecutionContext.set_tensor_address": ("10", "11"),
    "IExecutionContext.execute_async_v3": ("10", "11"),
    "ICudaEngine.create_execution_context": ("10", "11"),
    "ICudaEngine.get_tensor_profile_shape": ("10", "11"),
    "ICudaEngine.device_memory_size_v2": ("10", "11"),  # device_memory_size is gone in 11.x
    "IExecutionContext.get_tensor_shape": ("10", "11"),
    "TensorIOMode.INPUT": ("10", "11"),
    "nptype": ("10", "11"),
    "EngineInspector.get_engine_information": ("10", "11"),
    "LayerInformationFormat.JSON": ("10", "11"),
    # builder (trt/builder.py), the same in 10.x and 11.x
    "Builder": ("10", "11"),
    "Builder.create_network": ("10", "11"),
    "Builder.create_builder_config": ("10", "11"),
    "Builder.create_optimization_profile": ("10", "11"),
    "Builder.build_serialized_network": ("10", "11"),
    "Builder.num_DLA_cores": ("10", "11"),
    "NetworkDefinitionCreationFlag.STRONGLY_TYPED": ("10", "11"),
    "OnnxParser": ("10", "11"),
    "OnnxParser.parse_from_file": ("10", "11"),
    "OnnxParser.num_errors": ("10", "11"),
    "OnnxParser.get_error": ("10", "11"),
    "ParserError.desc": ("10", "11"),
    "ParserError.node": ("10", "11"),
    "ParserError.node_name": ("10", "11"),
    "ParserError.node_operator": ("10", "11"),
    "ParserError.code": ("10", "11"),
    "IBuilderConfig.set_memory_pool_limit": ("10", "11"),
    "MemoryPoolType.WORKSPACE": ("10", "11"),
    "IBuilderConfig.builder_optimization_level": ("10", "11"),
    "IBuilderConfig.profiling_verbosity": ("10", "11"),
    "ProfilingVerbosity.DETAILED": ("10", "11"),
    "ProfilingVerbosity.LAYER_NAMES_ONLY": ("10", "11"),
    "IBuilderConfig.set_flag": ("10", "11"),
    "BuilderFlag.GPU_FALLBACK": ("10", "11"),
    "BuilderFlag.VERSION_COMPATIBLE": ("10", "11"),
    "IBuilderConfig.hardware_compatibility_level": ("10", "11"),
    "HardwareCompatibilityLevel.AMPERE_PLUS": ("10", "11"),
    "HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY": ("10.13", "11"),  # absent in 10.3
    "IBuilderConfig.default_device_type": ("10", "11"),
    "DeviceType.DLA": ("10", "11"),
    "IBuilderConfig.DLA_core": ("10", "11"),
    "IOptimizationProfile.set_shape": ("10", "11"),
    "IBuilderConfig.add_optimization_profile": ("10", "11"),
    "IBuilderConfig.progress_monitor": ("10", "11"),
    "IProgressMonitor": ("10", "11"),
    "IProgressMonitor.__init__": ("10", "11"),
    "IBuilderConfig.create_timing_cache": ("10", "11"),
    "IBuilderConfig.set_timing_cache": ("10", "11"),
    "IBuilderConfig.get_timing_cache": ("10", "11"),
    "ITimingCache.serialize": ("10", "11"),
    "ILogger": ("10", "11"),
    "ILogger.__init__": ("10", "11"),
    "ILogger.ERROR": ("10", "11"),
    "ILogger.INTERNAL_ERROR": ("10", "11"),
    "ILogger.WARNING": ("10", "11"),
    "Runtime": ("10", "11"),
    "init_libnvinfer_plugins": ("10", "11"),
    # weak typing (precision flags, INT8 calibration): 10.x only, removed in 11.x
    "BuilderFlag.FP16": ("10",),
    "BuilderFlag.INT8": ("10",),
    "IInt8EntropyCalibrator2": ("10",),
    "IInt8EntropyCalibrator2.__init__": ("10",),
    "IBuilderConfig.int8_calibrator": ("10",),
}
