package smoke

// outputsEnv names the file holding `pulumi stack output --json --show-secrets`.
const outputsEnv = "SMOKE_OUTPUTS"
