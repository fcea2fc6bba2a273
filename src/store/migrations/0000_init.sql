CREATE TABLE `attempts` (
	`id` text PRIMARY KEY NOT NULL,
	`rollout_id` text NOT NULL,
	`attempt_no` integer NOT NULL,
	`worker_id` text NOT NULL,
	`status` text NOT NULL,
	`resources_version` integer,
	`started_at` integer NOT NULL,
	`heartbeat_at` integer NOT NULL,
	`ended_at` integer,
	`error` text,
	`reward` real,
	`late_status` text,
	`late_error` text,
	`late_at` integer,
	FOREIGN KEY (`rollout_id`) REFERENCES `rollouts`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE UNIQUE INDEX `attempts_rollout_no` ON `attempts` (`rollout_id`,`attempt_no`);--> statement-breakpoint
CREATE INDEX `attempts_status` ON `attempts` (`status`);--> statement-breakpoint
CREATE TABLE `resources` (
	`name` text NOT NULL,
	`version` integer NOT NULL,
	`value` text NOT NULL,
	`created_at` integer NOT NULL,
	PRIMARY KEY(`name`, `version`)
);
--> statement-breakpoint
CREATE TABLE `rewards` (
	`id` text PRIMARY KEY NOT NULL,
	`rollout_id` text NOT NULL,
	`attempt_id` text NOT NULL,
	`span_id` text,
	`value` real NOT NULL,
	`dimensions` text,
	`late` integer DEFAULT false NOT NULL,
	`created_at` integer NOT NULL,
	FOREIGN KEY (`rollout_id`) REFERENCES `rollouts`(`id`) ON UPDATE no action ON DELETE no action,
	FOREIGN KEY (`attempt_id`) REFERENCES `attempts`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE INDEX `rewards_attempt` ON `rewards` (`attempt_id`);--> statement-breakpoint
CREATE INDEX `rewards_rollout` ON `rewards` (`rollout_id`);--> statement-breakpoint
CREATE TABLE `rollouts` (
	`id` text PRIMARY KEY NOT NULL,
	`input` text NOT NULL,
	`mode` text NOT NULL,
	`group_id` text,
	`status` text NOT NULL,
	`resources_name` text,
	`resources_version` integer,
	`resources_pinned` integer DEFAULT false NOT NULL,
	`max_attempts` integer NOT NULL,
	`timeout_ms` integer,
	`unresponsive_timeout_ms` integer,
	`retry_on` text NOT NULL,
	`metadata` text,
	`attempt_count` integer DEFAULT 0 NOT NULL,
	`current_attempt_id` text,
	`final_reward` real,
	`created_at` integer NOT NULL,
	`updated_at` integer NOT NULL,
	`started_at` integer,
	`ended_at` integer
);
--> statement-breakpoint
CREATE INDEX `rollouts_status_mode` ON `rollouts` (`status`,`mode`);--> statement-breakpoint
CREATE INDEX `rollouts_group` ON `rollouts` (`group_id`);--> statement-breakpoint
CREATE INDEX `rollouts_current_attempt` ON `rollouts` (`current_attempt_id`);--> statement-breakpoint
CREATE INDEX `rollouts_queue` ON `rollouts` (`created_at`) WHERE status IN ('queuing', 'requeuing');--> statement-breakpoint
CREATE INDEX `rollouts_queue_mode` ON `rollouts` (`mode`,`created_at`) WHERE status IN ('queuing', 'requeuing');--> statement-breakpoint
CREATE TABLE `spans` (
	`id` text PRIMARY KEY NOT NULL,
	`rollout_id` text NOT NULL,
	`attempt_id` text NOT NULL,
	`seq` integer NOT NULL,
	`trace_id` text NOT NULL,
	`span_id` text NOT NULL,
	`parent_span_id` text,
	`name` text NOT NULL,
	`kind` text NOT NULL,
	`start_time` real NOT NULL,
	`end_time` real,
	`attributes` text NOT NULL,
	`events` text NOT NULL,
	`status` text,
	`late` integer DEFAULT false NOT NULL,
	`created_at` integer NOT NULL,
	FOREIGN KEY (`rollout_id`) REFERENCES `rollouts`(`id`) ON UPDATE no action ON DELETE no action,
	FOREIGN KEY (`attempt_id`) REFERENCES `attempts`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE UNIQUE INDEX `spans_attempt_seq` ON `spans` (`attempt_id`,`seq`);--> statement-breakpoint
CREATE INDEX `spans_rollout` ON `spans` (`rollout_id`);--> statement-breakpoint
CREATE TABLE `training_steps` (
	`id` integer PRIMARY KEY AUTOINCREMENT NOT NULL,
	`step` integer NOT NULL,
	`metrics` text NOT NULL,
	`created_at` integer NOT NULL
);
--> statement-breakpoint
CREATE INDEX `training_steps_step` ON `training_steps` (`step`);--> statement-breakpoint
CREATE TABLE `transitions` (
	`id` text PRIMARY KEY NOT NULL,
	`rollout_id` text,
	`attempt_id` text,
	`span_id` text,
	`prompt_ids` blob NOT NULL,
	`response_ids` blob NOT NULL,
	`response_logprobs` blob,
	`messages` text NOT NULL,
	`response` text,
	`model` text,
	`adapter_version` text,
	`finish_reason` text,
	`usage` text,
	`metadata` text,
	`late` integer DEFAULT false NOT NULL,
	`created_at` integer NOT NULL,
	FOREIGN KEY (`rollout_id`) REFERENCES `rollouts`(`id`) ON UPDATE no action ON DELETE no action,
	FOREIGN KEY (`attempt_id`) REFERENCES `attempts`(`id`) ON UPDATE no action ON DELETE no action
);
--> statement-breakpoint
CREATE INDEX `transitions_attempt` ON `transitions` (`attempt_id`);--> statement-breakpoint
CREATE INDEX `transitions_rollout` ON `transitions` (`rollout_id`);