"""safety-heads: find and steer the parts of a chat model that decide between refusing and complying."""

from interp.provenance import __version__  # noqa: E402
from interp.errors import ArtifactError, InputError, ModelLoadError, SafetyHeadsError  # noqa: E402
from interp.prompts import Prompt, PromptSet  # noqa: E402
from interp.model import ChatModel, load_model  # noqa: E402
from interp.sources import ModelSource, ResolvedModel, register_model_source  # noqa: E402
from interp.scoring import RefusalJudge, refusal_score  # noqa: E402
from interp.generation import GenerationConfig, generate  # noqa: E402
from interp.capture import Activations, Site, capture, capture_to_disk  # noqa: E402
from interp.direction import Direction  # noqa: E402
from interp.study import Study, StudyConfig, StudyData, files_study  # noqa: E402

__all__ = [
    "__version__", "ArtifactError", "InputError", "ModelLoadError", "SafetyHeadsError", "Prompt", "PromptSet",
    "ChatModel", "load_model", "ModelSource", "ResolvedModel", "register_model_source", "RefusalJudge", "refusal_score", "GenerationConfig", "generate",
    "Activations", "Site", "capture", "capture_to_disk", "Direction", "Study", "StudyConfig", "StudyData", "files_study",
]

# The model organisms plug in as model sources (`interp.sources`); registering them here, where the
# public API is assembled, makes `load_model("organism")` work after any `import interp...`, while
# the core modules themselves never import them.
import organisms.source  # noqa: E402,F401
import interp.r2d.source  # noqa: E402,F401  (`--model r2d:DIR`, an R2D adapter trained by `safety-heads r2d train`)
