{{/* Name of the release's objects. */}}
{{- define "portcullis.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels every object carries. */}}
{{- define "portcullis.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Labels that select the pods. */}}
{{- define "portcullis.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The metrics Service's name, which Prometheus takes as the job label. */}}
{{- define "portcullis.metricsService" -}}
{{- printf "%s-metrics" (include "portcullis.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The ConfigMap of manifests the pod reads. */}}
{{- define "portcullis.manifestsConfigMap" -}}
{{- if .Values.existingConfigMap -}}
{{- .Values.existingConfigMap -}}
{{- else -}}
{{- printf "%s-manifests" (include "portcullis.fullname" .) -}}
{{- end -}}
{{- end -}}

{{/* The mode, refusing any other value. */}}
{{- define "portcullis.mode" -}}
{{- if not (has .Values.mode (list "kubernetes" "standalone")) -}}
{{- fail (printf "mode: %q is neither kubernetes nor standalone" (toString .Values.mode)) -}}
{{- end -}}
{{- .Values.mode -}}
{{- end -}}

{{/* Pods to run: replicaCount, else 2 (Kubernetes mode) or 1 (standalone). */}}
{{- define "portcullis.replicas" -}}
{{- if kindIs "invalid" .Values.replicaCount -}}
{{- if eq (include "portcullis.mode" .) "kubernetes" }}2{{ else }}1{{ end -}}
{{- else -}}
{{- int .Values.replicaCount -}}
{{- end -}}
{{- end -}}

{{/* The ServiceAccount the pods run as (Kubernetes mode). */}}
{{- define "portcullis.serviceAccountName" -}}
{{- .Values.serviceAccount.name | default (include "portcullis.fullname" .) -}}
{{- end -}}

{{/* The leader Lease's name (Kubernetes mode). */}}
{{- define "portcullis.leaseName" -}}
{{- .Values.kubernetes.leaseName | default (printf "%s-leader" (include "portcullis.fullname" .) | trunc 63 | trimSuffix "-") -}}
{{- end -}}

{{/* The container image. */}}
{{- define "portcullis.image" -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}

{{/* The container's ports: each Service port plus the offset, and admin. */}}
{{- define "portcullis.containerPorts" -}}
{{- range .Values.service.ports }}
- name: {{ .name }}
  containerPort: {{ add (int .port) (int $.Values.portOffset) }}
  protocol: {{ .protocol | default "TCP" }}
{{- end }}
- name: admin
  containerPort: {{ .Values.admin.port }}
  protocol: TCP
{{- end -}}

{{/* Liveness and readiness on the admin port. */}}
{{- define "portcullis.probes" -}}
livenessProbe:
  httpGet:
    path: /healthz
    port: admin
  periodSeconds: 10
readinessProbe:
  httpGet:
    path: /readyz
    port: admin
  periodSeconds: 5
{{- end -}}
