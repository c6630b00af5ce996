"""
steepest's C++ core: networks, losses and optimizers over flat buffers
"""
# Type stub of the compiled module, written by `pybind11-stubgen steepest._core` and then
# corrected by hand where the generator cannot name a type (Optimizer*.step's network, the
# float32/float64 overloads of loss_forward). tests/test_package.py checks that it lists
# exactly the names the module has: regenerate it when the bindings change.
from __future__ import annotations
import collections.abc
import numpy
import numpy.typing
import typing
__all__: list[str] = ['Activation', 'BatchCheck', 'BatchRule', 'DenseSizes', 'Init', 'LayerKind', 'LayerSpec', 'LossKind', 'LossSpec', 'Network32', 'Network64', 'NormSizes', 'Optimizer32', 'Optimizer64', 'OptimizerConfig', 'OptimizerKind', 'SizeTable', 'Slot', 'StepStatus', 'Store', 'check_features', 'check_targets', 'clip_grad_norm', 'gemm_isa', 'get_num_threads', 'loss_forward', 'set_num_threads', 'size_table']
class LayerKind:
    """
    Members:
    
      Dense
    
      Activation
    
      Softmax
    
      Dropout
    
      BatchNorm
    
      LayerNorm
    
      Standardize
    
      MinMaxScale
    """
    Activation: typing.ClassVar[LayerKind]
    BatchNorm: typing.ClassVar[LayerKind]
    Dense: typing.ClassVar[LayerKind]
    Dropout: typing.ClassVar[LayerKind]
    LayerNorm: typing.ClassVar[LayerKind]
    MinMaxScale: typing.ClassVar[LayerKind]
    Softmax: typing.ClassVar[LayerKind]
    Standardize: typing.ClassVar[LayerKind]
    __members__: typing.ClassVar[dict[str, LayerKind]]
    @typing.overload
    def __eq__(self, other: LayerKind) -> bool:
        ...
    @typing.overload
    def __eq__(self, other: typing.Any) -> bool:
        ...
    def __getstate__(self) -> int:
        ...
    def __hash__(self) -> int:
        ...
    def __index__(self) -> int:
        ...
    def __init__(self, value: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __int__(self) -> int:
        ...
    @typing.overload
    def __ne__(self, other: LayerKind) -> bool:
        ...
    @typing.overload
    def __ne__(self, other: typing.Any) -> bool:
        ...
    def __repr__(self) -> str:
        ...
    def __setstate__(self, state: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __str__(self) -> str:
        ...
    @property
    def name(self) -> str:
        ...
    @property
    def value(self) -> int:
        ...
class Store:
    """
    Members:
    
      Params
    
      Buffers
    
      Counts
    """
    Buffers: typing.ClassVar[Store]
    Counts: typing.ClassVar[Store]
    Params: typing.ClassVar[Store]
    __members__: typing.ClassVar[dict[str, Store]]
    @typing.overload
    def __eq__(self, other: Store) -> bool:
        ...
    @typing.overload
    def __eq__(self, other: typing.Any) -> bool:
        ...
    def __getstate__(self) -> int:
        ...
    def __hash__(self) -> int:
        ...
    def __index__(self) -> int:
        ...
    def __init__(self, value: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __int__(self) -> int:
        ...
    @typing.overload
    def __ne__(self, other: Store) -> bool:
        ...
    @typing.overload
    def __ne__(self, other: typing.Any) -> bool:
        ...
    def __repr__(self) -> str:
        ...
    def __setstate__(self, state: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __str__(self) -> str:
        ...
    @property
    def name(self) -> str:
        ...
    @property
    def value(self) -> int:
        ...
class Activation:
    """
    Members:
    
      ReLU
    
      LeakyReLU
    
      ELU
    
      GELU
    
      SiLU
    
      Sigmoid
    
      Tanh
    
      Softplus
    
      GELUTanh
    """
    ELU: typing.ClassVar[Activation]
    GELU: typing.ClassVar[Activation]
    GELUTanh: typing.ClassVar[Activation]
    LeakyReLU: typing.ClassVar[Activation]
    ReLU: typing.ClassVar[Activation]
    SiLU: typing.ClassVar[Activation]
    Sigmoid: typing.ClassVar[Activation]
    Softplus: typing.ClassVar[Activation]
    Tanh: typing.ClassVar[Activation]
    __members__: typing.ClassVar[dict[str, Activation]]
    @typing.overload
    def __eq__(self, other: Activation) -> bool:
        ...
    @typing.overload
    def __eq__(self, other: typing.Any) -> bool:
        ...
    def __getstate__(self) -> int:
        ...
    def __hash__(self) -> int:
        ...
    def __index__(self) -> int:
        ...
    def __init__(self, value: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __int__(self) -> int:
        ...
    @typing.overload
    def __ne__(self, other: Activation) -> bool:
        ...
    @typing.overload
    def __ne__(self, other: typing.Any) -> bool:
        ...
    def __repr__(self) -> str:
        ...
    def __setstate__(self, state: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __str__(self) -> str:
        ...
    @property
    def name(self) -> str:
        ...
    @property
    def value(self) -> int:
        ...
class Init:
    """
    Members:
    
      torch_default
    
      glorot_uniform
    
      glorot_normal
    
      he_uniform
    
      he_normal
    
      lecun_normal
    
      normal
    
      zeros
    """
    __members__: typing.ClassVar[dict[str, Init]]
    glorot_normal: typing.ClassVar[Init]
    glorot_uniform: typing.ClassVar[Init]
    he_normal: typing.ClassVar[Init]
    he_uniform: typing.ClassVar[Init]
    lecun_normal: typing.ClassVar[Init]
    normal: typing.ClassVar[Init]
    torch_default: typing.ClassVar[Init]
    zeros: typing.ClassVar[Init]
    @typing.overload
    def __eq__(self, other: Init) -> bool:
        ...
    @typing.overload
    def __eq__(self, other: typing.Any) -> bool:
        ...
    def __getstate__(self) -> int:
        ...
    def __hash__(self) -> int:
        ...
    def __index__(self) -> int:
        ...
    def __init__(self, value: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __int__(self) -> int:
        ...
    @typing.overload
    def __ne__(self, other: Init) -> bool:
        ...
    @typing.overload
    def __ne__(self, other: typing.Any) -> bool:
        ...
    def __repr__(self) -> str:
        ...
    def __setstate__(self, state: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __str__(self) -> str:
        ...
    @property
    def name(self) -> str:
        ...
    @property
    def value(self) -> int:
        ...
class LossKind:
    """
    Members:
    
      MSE
    
      L1
    
      Huber
    
      BinaryCrossEntropy
    
      CrossEntropy
    
      PoissonNLL
    """
    BinaryCrossEntropy: typing.ClassVar[LossKind]
    CrossEntropy: typing.ClassVar[LossKind]
    Huber: typing.ClassVar[LossKind]
    L1: typing.ClassVar[LossKind]
    MSE: typing.ClassVar[LossKind]
    PoissonNLL: typing.ClassVar[LossKind]
    __members__: typing.ClassVar[dict[str, LossKind]]
    @typing.overload
    def __eq__(self, other: LossKind) -> bool:
        ...
    @typing.overload
    def __eq__(self, other: typing.Any) -> bool:
        ...
    def __getstate__(self) -> int:
        ...
    def __hash__(self) -> int:
        ...
    def __index__(self) -> int:
        ...
    def __init__(self, value: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __int__(self) -> int:
        ...
    @typing.overload
    def __ne__(self, other: LossKind) -> bool:
        ...
    @typing.overload
    def __ne__(self, other: typing.Any) -> bool:
        ...
    def __repr__(self) -> str:
        ...
    def __setstate__(self, state: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __str__(self) -> str:
        ...
    @property
    def name(self) -> str:
        ...
    @property
    def value(self) -> int:
        ...
class OptimizerKind:
    """
    Members:
    
      SGD
    
      Adam
    
      AdamW
    
      RMSprop
    
      Adagrad
    """
    Adagrad: typing.ClassVar[OptimizerKind]
    Adam: typing.ClassVar[OptimizerKind]
    AdamW: typing.ClassVar[OptimizerKind]
    RMSprop: typing.ClassVar[OptimizerKind]
    SGD: typing.ClassVar[OptimizerKind]
    __members__: typing.ClassVar[dict[str, OptimizerKind]]
    @typing.overload
    def __eq__(self, other: OptimizerKind) -> bool:
        ...
    @typing.overload
    def __eq__(self, other: typing.Any) -> bool:
        ...
    def __getstate__(self) -> int:
        ...
    def __hash__(self) -> int:
        ...
    def __index__(self) -> int:
        ...
    def __init__(self, value: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __int__(self) -> int:
        ...
    @typing.overload
    def __ne__(self, other: OptimizerKind) -> bool:
        ...
    @typing.overload
    def __ne__(self, other: typing.Any) -> bool:
        ...
    def __repr__(self) -> str:
        ...
    def __setstate__(self, state: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __str__(self) -> str:
        ...
    @property
    def name(self) -> str:
        ...
    @property
    def value(self) -> int:
        ...
class StepStatus:
    """
    Members:
    
      Ok
    
      NonFiniteLoss
    
      NonFiniteGradient
    
      Interrupted
    """
    Interrupted: typing.ClassVar[StepStatus]
    NonFiniteGradient: typing.ClassVar[StepStatus]
    NonFiniteLoss: typing.ClassVar[StepStatus]
    Ok: typing.ClassVar[StepStatus]
    __members__: typing.ClassVar[dict[str, StepStatus]]
    @typing.overload
    def __eq__(self, other: StepStatus) -> bool:
        ...
    @typing.overload
    def __eq__(self, other: typing.Any) -> bool:
        ...
    def __getstate__(self) -> int:
        ...
    def __hash__(self) -> int:
        ...
    def __index__(self) -> int:
        ...
    def __init__(self, value: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __int__(self) -> int:
        ...
    @typing.overload
    def __ne__(self, other: StepStatus) -> bool:
        ...
    @typing.overload
    def __ne__(self, other: typing.Any) -> bool:
        ...
    def __repr__(self) -> str:
        ...
    def __setstate__(self, state: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __str__(self) -> str:
        ...
    @property
    def name(self) -> str:
        ...
    @property
    def value(self) -> int:
        ...
class BatchRule:
    """
    Members:
    
      Ok
    
      XShape
    
      XEmpty
    
      XFeatures
    
      XType
    
      XLayout
    
      XNonFinite
    
      YShape
    
      YLength
    
      YType
    
      YLayout
    
      YNonFinite
    
      LabelRange
    
      TargetRange
    
      LossWeights
    """
    LabelRange: typing.ClassVar[BatchRule]
    LossWeights: typing.ClassVar[BatchRule]
    Ok: typing.ClassVar[BatchRule]
    TargetRange: typing.ClassVar[BatchRule]
    XEmpty: typing.ClassVar[BatchRule]
    XFeatures: typing.ClassVar[BatchRule]
    XLayout: typing.ClassVar[BatchRule]
    XNonFinite: typing.ClassVar[BatchRule]
    XShape: typing.ClassVar[BatchRule]
    XType: typing.ClassVar[BatchRule]
    YLayout: typing.ClassVar[BatchRule]
    YLength: typing.ClassVar[BatchRule]
    YNonFinite: typing.ClassVar[BatchRule]
    YShape: typing.ClassVar[BatchRule]
    YType: typing.ClassVar[BatchRule]
    __members__: typing.ClassVar[dict[str, BatchRule]]
    @typing.overload
    def __eq__(self, other: BatchRule) -> bool:
        ...
    @typing.overload
    def __eq__(self, other: typing.Any) -> bool:
        ...
    def __getstate__(self) -> int:
        ...
    def __hash__(self) -> int:
        ...
    def __index__(self) -> int:
        ...
    def __init__(self, value: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __int__(self) -> int:
        ...
    @typing.overload
    def __ne__(self, other: BatchRule) -> bool:
        ...
    @typing.overload
    def __ne__(self, other: typing.Any) -> bool:
        ...
    def __repr__(self) -> str:
        ...
    def __setstate__(self, state: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    def __str__(self) -> str:
        ...
    @property
    def name(self) -> str:
        ...
    @property
    def value(self) -> int:
        ...
class LayerSpec:
    activation: Activation
    affine: bool
    bias: bool
    init: Init
    kind: LayerKind
    track_running_stats: bool
    def __init__(self) -> None:
        ...
    @property
    def bias_offset(self) -> int:
        ...
    @property
    def eps(self) -> float:
        ...
    @eps.setter
    def eps(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def in_features(self) -> int:
        ...
    @in_features.setter
    def in_features(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def momentum(self) -> float:
        ...
    @momentum.setter
    def momentum(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def out_features(self) -> int:
        ...
    @out_features.setter
    def out_features(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def param(self) -> float:
        ...
    @param.setter
    def param(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def threshold(self) -> float:
        ...
    @threshold.setter
    def threshold(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def weight_offset(self) -> int:
        ...
class LossSpec:
    kind: LossKind
    pos_weight: list[float]
    weight: list[float]
    def __init__(self) -> None:
        ...
    @property
    def delta(self) -> float:
        ...
    @delta.setter
    def delta(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def ignore_index(self) -> int:
        ...
    @ignore_index.setter
    def ignore_index(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
    @property
    def l2(self) -> float:
        ...
    @l2.setter
    def l2(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def label_smoothing(self) -> float:
        ...
    @label_smoothing.setter
    def label_smoothing(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def scale(self) -> float:
        ...
    @scale.setter
    def scale(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
class OptimizerConfig:
    amsgrad: bool
    centered: bool
    kind: OptimizerKind
    maximize: bool
    nesterov: bool
    def __init__(self) -> None:
        ...
    @property
    def alpha(self) -> float:
        ...
    @alpha.setter
    def alpha(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def beta1(self) -> float:
        ...
    @beta1.setter
    def beta1(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def beta2(self) -> float:
        ...
    @beta2.setter
    def beta2(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def dampening(self) -> float:
        ...
    @dampening.setter
    def dampening(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def eps(self) -> float:
        ...
    @eps.setter
    def eps(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def initial_accumulator_value(self) -> float:
        ...
    @initial_accumulator_value.setter
    def initial_accumulator_value(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def lr(self) -> float:
        ...
    @lr.setter
    def lr(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def lr_decay(self) -> float:
        ...
    @lr_decay.setter
    def lr_decay(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def momentum(self) -> float:
        ...
    @momentum.setter
    def momentum(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
    @property
    def weight_decay(self) -> float:
        ...
    @weight_decay.setter
    def weight_decay(self, arg0: typing.SupportsFloat | typing.SupportsIndex) -> None:
        ...
class DenseSizes:
    def __repr__(self) -> str:
        ...
    @property
    def bias_offset(self) -> int:
        ...
    @property
    def bias_shape(self) -> typing.Any:
        ...
    @property
    def in_features(self) -> int:
        ...
    @property
    def layer(self) -> int:
        ...
    @property
    def out_features(self) -> int:
        ...
    @property
    def weight_offset(self) -> int:
        ...
    @property
    def weight_shape(self) -> tuple[int, int]:
        ...
class Slot:
    def __repr__(self) -> str:
        ...
    @property
    def layer(self) -> int:
        ...
    @property
    def name(self) -> str:
        ...
    @property
    def offset(self) -> int:
        ...
    @property
    def shape(self) -> tuple:
        ...
    @property
    def size(self) -> int:
        ...
    @property
    def store(self) -> Store:
        ...
class NormSizes:
    @property
    def bias_offset(self) -> int:
        ...
    @property
    def buffer_offset(self) -> int:
        ...
    @property
    def count_offset(self) -> int:
        ...
    @property
    def layer(self) -> int:
        ...
    @property
    def weight_offset(self) -> int:
        ...
    @property
    def width(self) -> int:
        ...
class SizeTable:
    def __repr__(self) -> str:
        ...
    @property
    def dense(self) -> list[DenseSizes]:
        ...
    @property
    def norms(self) -> list[NormSizes]:
        ...
    @property
    def num_buffers(self) -> int:
        ...
    @property
    def num_counts(self) -> int:
        ...
    @property
    def num_params(self) -> int:
        ...
    @property
    def slots(self) -> list[Slot]:
        ...
    @property
    def workspace_per_row(self) -> int:
        ...
class BatchCheck:
    def __repr__(self) -> str:
        ...
    @property
    def got(self) -> int:
        ...
    @property
    def label_max(self) -> int:
        ...
    @property
    def label_min(self) -> int:
        ...
    @property
    def ok(self) -> bool:
        ...
    @property
    def rule(self) -> BatchRule:
        ...
    @property
    def target_max(self) -> float:
        ...
    @property
    def target_min(self) -> float:
        ...
    @property
    def want(self) -> int:
        ...
class Optimizer32:
    config: OptimizerConfig
    def __init__(self, config: OptimizerConfig, ranges: collections.abc.Sequence[tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex]]) -> None:
        ...
    def state(self) -> dict:
        ...
    def step(self, arg0: Network32) -> None:
        ...
    @property
    def ranges(self) -> list[tuple[int, int]]:
        ...
    @property
    def steps(self) -> int:
        ...
    @steps.setter
    def steps(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
class Optimizer64:
    config: OptimizerConfig
    def __init__(self, config: OptimizerConfig, ranges: collections.abc.Sequence[tuple[typing.SupportsInt | typing.SupportsIndex, typing.SupportsInt | typing.SupportsIndex]]) -> None:
        ...
    def state(self) -> dict:
        ...
    def step(self, arg0: Network64) -> None:
        ...
    @property
    def ranges(self) -> list[tuple[int, int]]:
        ...
    @property
    def steps(self) -> int:
        ...
    @steps.setter
    def steps(self, arg0: typing.SupportsInt | typing.SupportsIndex) -> None:
        ...
class Network32:
    float64_sums: bool
    def __init__(self, layers: collections.abc.Sequence[LayerSpec], seed: typing.SupportsInt | typing.SupportsIndex, initialize: bool = True) -> None:
        ...
    def backward(self, dy: numpy.typing.NDArray[numpy.float32], accumulate: bool) -> None:
        ...
    def copy_state(self) -> tuple[numpy.typing.NDArray[numpy.float32], numpy.typing.NDArray[numpy.float32], numpy.typing.NDArray[numpy.int64]]:
        ...
    def forward(self, x: numpy.typing.NDArray[numpy.float32], training: bool) -> numpy.typing.NDArray[numpy.float32]:
        ...
    def gradient(self, x: numpy.typing.NDArray[numpy.float32], y: numpy.ndarray, loss: LossSpec, weights: numpy.typing.NDArray[numpy.float64] | None, training: bool) -> float:
        ...
    def infer(self, x: numpy.typing.NDArray[numpy.float32]) -> numpy.typing.NDArray[numpy.float32]:
        ...
    def initialize(self) -> None:
        ...
    def layer_outputs(self, x: numpy.typing.NDArray[numpy.float32]) -> list:
        ...
    def measure_grads(self) -> list[float]:
        ...
    def train_epoch(self, X: numpy.ndarray | list[numpy.ndarray], y: numpy.ndarray | list[numpy.ndarray], batch_size: typing.SupportsInt | typing.SupportsIndex, shuffle: bool, loss: LossSpec, optimizer: Optimizer32, clip_norm: typing.SupportsFloat | typing.SupportsIndex, progress: typing.Any = None, rank: typing.SupportsInt | typing.SupportsIndex = 0, size: typing.SupportsInt | typing.SupportsIndex = 1, sum: typing.Any = None, stop: typing.Any = None, on_step: typing.Any = None, weights: numpy.typing.NDArray[numpy.float64] | None = None, order: numpy.typing.NDArray[numpy.int64] | None = None) -> dict:
        ...
    def train_step(self, x: numpy.ndarray, y: numpy.ndarray, loss: LossSpec, optimizer: Optimizer32, clip_norm: typing.SupportsFloat | typing.SupportsIndex, sample_weight: numpy.typing.NDArray[numpy.float64] | None = None) -> tuple:
        ...
    def write_state(self, params: numpy.typing.NDArray[numpy.float32], buffers: numpy.typing.NDArray[numpy.float32], counts: numpy.typing.NDArray[numpy.int64]) -> None:
        ...
    @property
    def buffers(self) -> numpy.typing.NDArray[numpy.float32]:
        ...
    @property
    def counts(self) -> numpy.typing.NDArray[numpy.int64]:
        ...
    @property
    def grads(self) -> numpy.typing.NDArray[numpy.float32]:
        ...
    @property
    def layers(self) -> list[LayerSpec]:
        ...
    @property
    def num_params(self) -> int:
        ...
    @property
    def params(self) -> numpy.typing.NDArray[numpy.float32]:
        ...
    @property
    def reduce_buffer(self) -> numpy.typing.NDArray[numpy.float32]:
        ...
    @property
    def rng_state(self) -> typing.Annotated[list[int], "FixedSize(4)"]:
        ...
    @rng_state.setter
    def rng_state(self, arg1: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(4)"]) -> None:
        ...
class Network64:
    float64_sums: bool
    def __init__(self, layers: collections.abc.Sequence[LayerSpec], seed: typing.SupportsInt | typing.SupportsIndex, initialize: bool = True) -> None:
        ...
    def backward(self, dy: numpy.typing.NDArray[numpy.float64], accumulate: bool) -> None:
        ...
    def copy_state(self) -> tuple[numpy.typing.NDArray[numpy.float64], numpy.typing.NDArray[numpy.float64], numpy.typing.NDArray[numpy.int64]]:
        ...
    def forward(self, x: numpy.typing.NDArray[numpy.float64], training: bool) -> numpy.typing.NDArray[numpy.float64]:
        ...
    def gradient(self, x: numpy.typing.NDArray[numpy.float64], y: numpy.ndarray, loss: LossSpec, weights: numpy.typing.NDArray[numpy.float64] | None, training: bool) -> float:
        ...
    def infer(self, x: numpy.typing.NDArray[numpy.float64]) -> numpy.typing.NDArray[numpy.float64]:
        ...
    def initialize(self) -> None:
        ...
    def layer_outputs(self, x: numpy.typing.NDArray[numpy.float64]) -> list:
        ...
    def measure_grads(self) -> list[float]:
        ...
    def train_epoch(self, X: numpy.ndarray | list[numpy.ndarray], y: numpy.ndarray | list[numpy.ndarray], batch_size: typing.SupportsInt | typing.SupportsIndex, shuffle: bool, loss: LossSpec, optimizer: Optimizer64, clip_norm: typing.SupportsFloat | typing.SupportsIndex, progress: typing.Any = None, rank: typing.SupportsInt | typing.SupportsIndex = 0, size: typing.SupportsInt | typing.SupportsIndex = 1, sum: typing.Any = None, stop: typing.Any = None, on_step: typing.Any = None, weights: numpy.typing.NDArray[numpy.float64] | None = None, order: numpy.typing.NDArray[numpy.int64] | None = None) -> dict:
        ...
    def train_step(self, x: numpy.ndarray, y: numpy.ndarray, loss: LossSpec, optimizer: Optimizer64, clip_norm: typing.SupportsFloat | typing.SupportsIndex, sample_weight: numpy.typing.NDArray[numpy.float64] | None = None) -> tuple:
        ...
    def write_state(self, params: numpy.typing.NDArray[numpy.float64], buffers: numpy.typing.NDArray[numpy.float64], counts: numpy.typing.NDArray[numpy.int64]) -> None:
        ...
    @property
    def buffers(self) -> numpy.typing.NDArray[numpy.float64]:
        ...
    @property
    def counts(self) -> numpy.typing.NDArray[numpy.int64]:
        ...
    @property
    def grads(self) -> numpy.typing.NDArray[numpy.float64]:
        ...
    @property
    def layers(self) -> list[LayerSpec]:
        ...
    @property
    def num_params(self) -> int:
        ...
    @property
    def params(self) -> numpy.typing.NDArray[numpy.float64]:
        ...
    @property
    def reduce_buffer(self) -> numpy.typing.NDArray[numpy.float64]:
        ...
    @property
    def rng_state(self) -> typing.Annotated[list[int], "FixedSize(4)"]:
        ...
    @rng_state.setter
    def rng_state(self, arg1: typing.Annotated[collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex], "FixedSize(4)"]) -> None:
        ...
def check_features(x: numpy.ndarray, in_features: typing.SupportsInt | typing.SupportsIndex, dtype: typing.Any) -> BatchCheck:
    ...
def check_targets(y: numpy.ndarray, rows: typing.SupportsInt | typing.SupportsIndex, out_features: typing.SupportsInt | typing.SupportsIndex, loss: LossSpec, dtype: typing.Any) -> BatchCheck:
    ...
@typing.overload
def clip_grad_norm(model: Network32, max_norm: typing.SupportsFloat | typing.SupportsIndex) -> float:
    ...
@typing.overload
def clip_grad_norm(model: Network64, max_norm: typing.SupportsFloat | typing.SupportsIndex) -> float:
    ...
def gemm_isa() -> str:
    ...
def get_num_threads() -> int:
    ...
@typing.overload
def loss_forward(loss: LossSpec, out: numpy.typing.NDArray[numpy.float32], y: numpy.ndarray, sample_weight: numpy.typing.NDArray[numpy.float64] | None = None) -> tuple[float, numpy.typing.NDArray[numpy.float32], float]:  # type: ignore[overload-overlap]
    ...
@typing.overload
def loss_forward(loss: LossSpec, out: numpy.typing.NDArray[numpy.float64], y: numpy.ndarray, sample_weight: numpy.typing.NDArray[numpy.float64] | None = None) -> tuple[float, numpy.typing.NDArray[numpy.float64], float]:
    ...
def set_num_threads(n: typing.SupportsInt | typing.SupportsIndex) -> None:
    ...
def size_table(layers: collections.abc.Sequence[LayerSpec]) -> SizeTable:
    ...
